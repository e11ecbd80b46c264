//! Persistence of the emulator's state: an append-only log, replayed on start. The format is
//! documented in the `emulator` module's docs ("Persistence"); this is its one reader and writer.

use std::io;
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The first line of every log file.
pub(crate) const HEADER: &str = "edgekv-emulator-log v1";
/// The log's name inside the persistence directory.
pub(crate) const FILE_NAME: &str = "edgekv-emulator.log";

/// One change of state, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    FastlyStore {
        id: String,
        name: String,
        created_at: String,
    },
    FastlyStoreDeleted {
        id: String,
    },
    FastlyPut {
        store: String,
        key: String,
        #[serde(with = "b64")]
        value: Bytes,
        generation: u64,
        #[serde(with = "b64")]
        metadata: Bytes,
        expires: Option<i64>,
    },
    FastlyDelete {
        store: String,
        key: String,
    },
    CloudflareNamespace {
        id: String,
        title: String,
        supports_url_encoding: bool,
    },
    CloudflareNamespaceDeleted {
        id: String,
    },
    CloudflarePut {
        namespace: String,
        key: String,
        #[serde(with = "b64")]
        value: Bytes,
        expiration: Option<i64>,
        metadata: Option<String>,
    },
    CloudflareDelete {
        namespace: String,
        key: String,
    },
}

mod b64 {
    use base64::Engine as _;
    use bytes::Bytes;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// The emulator's open log.
pub(crate) type Journal = crate::journal::Log<Record>;

/// Opens (creating if needed) the log in `dir` and returns it with the records to replay.
pub(crate) fn open(dir: &Path) -> io::Result<(Journal, Vec<Record>)> {
    Journal::open(dir, FILE_NAME, HEADER)
}
