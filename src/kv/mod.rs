//! One key-value interface over both providers: [`KvStore`], implemented by
//! [`cloudflare::Namespace`](crate::cloudflare::Namespace), [`fastly::Store`](crate::fastly::Store)
//! and the in-process [`MemoryStore`], with [`Capabilities`] saying what each can hold and do.
//!
//! The trait is object-safe (`Arc<dyn KvStore>`), its futures boxed by hand, so code that moves
//! data between stores needs no generics and dependents compile no proc-macro for it. Each
//! implementation refuses, before any request, what its provider would refuse: a write the
//! provider cannot make is an [`InvalidInput`] error
//! (`Unsupported` for a condition or a metadata kind it does not have), never a silently
//! altered one.
//!
//! ```
//! # async fn demo() -> Result<(), edgekv::Error> {
//! use std::sync::Arc;
//! use edgekv::kv::{Capabilities, KvStore, MemoryStore, Write};
//!
//! let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new(Capabilities::cloudflare()));
//! store.put("greeting", "hello".into(), Write::new()).await?;
//! let entry = store.get("greeting").await?.expect("written");
//! assert_eq!(entry.value.bytes().await?, "hello");
//! // Cloudflare keeps no versions and has no conditional writes: refused, not ignored.
//! let refused = store.put("greeting", "again".into(), Write::new().if_absent()).await;
//! assert!(matches!(refused, Err(edgekv::Error::InvalidInput(_))));
//! # Ok(())
//! # }
//! ```

mod memory;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use memory::MemoryStore;

use crate::body::{Body, ValueStream};
use crate::bulk::BulkReport;
use crate::error::{Error, InvalidInput, Provider};

/// A key-value store of either provider, or a stand-in for one.
///
/// Keys are `&str`; values are bytes, byte-exact; [`Capabilities`] says what else a store
/// keeps. Every method checks its input against the store's rules first.
pub trait KvStore: Send + Sync {
    /// What this store can hold and do.
    fn capabilities(&self) -> &Capabilities;

    /// Which store this is, e.g. `cloudflare:<account>/<namespace>` or `fastly:<store>`: a job's
    /// journal records it, so one job's journal is never resumed for another pair of stores.
    fn id(&self) -> String;

    /// The entry under `key`, `None` if there is none (or it expired). The value streams.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, Error>>;

    /// Writes `value` under `key`, with the metadata, expiry and condition of `write`. A
    /// condition that does not hold is an error whose `is_precondition_failed()` is true.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Body,
        write: Write,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// Deletes `key`; a key that is not there is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>>;

    /// The keys starting with `prefix` (all for `""`), a page at a time, each page with the
    /// cursor that resumes after it (`None` on the last page): give it back as `cursor` to go
    /// on where a stopped listing ended.
    fn list(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> BoxStream<'static, Result<ListPage, Error>>;

    /// Writes every entry, `concurrency` requests at a time, in the provider's bulk requests
    /// where it has them. The report accounts for every entry read; an error from `entries`
    /// ends the call after what was read is sent ([`Error::partial_report`]).
    fn bulk_put<'a>(
        &'a self,
        entries: BoxStream<'a, Result<BulkItem, Error>>,
        concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>>;

    /// Deletes every key, as [`bulk_put`](Self::bulk_put) writes; a key that is not there
    /// counts as deleted.
    fn bulk_delete<'a>(
        &'a self,
        keys: BoxStream<'a, Result<String, Error>>,
        concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>>;

    /// The records of `keys`, in their order, `None` where there is none: byte-exact, in the
    /// provider's bulk reads where it has them (at most [`Capabilities::bulk_get_max`] keys a
    /// request), else single reads.
    fn bulk_get<'a>(&'a self, keys: Vec<String>) -> BoxFuture<'a, Result<Records, Error>>;
}

/// What [`KvStore::bulk_get`] returns: each key asked, in order, with its record or `None`.
pub type Records = Vec<(String, Option<Record>)>;

/// What a store can hold and do: its provider's limits and features.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whose rules these are.
    pub provider: Provider,
    /// The longest key, in bytes of UTF-8.
    pub max_key_bytes: usize,
    /// The largest value, in bytes.
    pub max_value_bytes: u64,
    /// The kind of metadata the store keeps.
    pub metadata: MetadataKind,
    /// The largest metadata, in bytes (Cloudflare's as serialized JSON).
    pub max_metadata_bytes: usize,
    /// The shortest time to live a write may ask for.
    pub min_ttl: Duration,
    /// Whether writes can be conditional ([`Condition::IfAbsent`], [`Condition::IfVersion`]).
    pub conditional_writes: bool,
    /// Whether a read gives the entry's version (Fastly's generation).
    pub versions: bool,
    /// Whether a read gives the entry's expiry (Fastly's does not).
    pub reads_expiry: bool,
    /// Whether a listing gives each key's metadata and expiry (Cloudflare's does).
    pub lists_metadata: bool,
    /// Whether a listing comes in lexicographic order of the keys' bytes.
    pub ordered_listing: bool,
    /// The most keys one bulk read asks for (0: the provider has no bulk read).
    pub bulk_get_max: usize,
    /// The most entries one bulk write sends.
    pub bulk_put_max: usize,
    /// The most keys one delete request removes (1: Fastly, a request a key).
    pub bulk_delete_max: usize,
    /// The provider's request budget, counted as it counts it (Cloudflare every request,
    /// Fastly only writes): what bounds a whole-store job.
    pub budget: crate::policy::ClientLimit,
}

/// The kind of metadata a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataKind {
    /// Text (Fastly: a header value).
    Text,
    /// A JSON value (Cloudflare).
    Json,
}

impl MetadataKind {
    /// Why a store keeping this kind refuses metadata of the other.
    pub(crate) fn refusal(self) -> InvalidInput {
        let what = match self {
            MetadataKind::Json => "text metadata (Cloudflare keeps JSON)",
            MetadataKind::Text => "JSON metadata (Fastly keeps text)",
        };
        InvalidInput::Unsupported { what }
    }
}

impl Capabilities {
    /// Cloudflare Workers KV: keys of 1 to 512 bytes other than `.` and `..`, values up to
    /// 25 MiB, JSON metadata up to 1,024 bytes, a TTL of at least 60 s, no conditional writes
    /// or versions, listings in key order with metadata and expiry, bulk reads of 100 keys and
    /// bulk writes of 10,000 pairs.
    pub fn cloudflare() -> Self {
        use crate::cloudflare::limits;
        Capabilities {
            provider: Provider::Cloudflare,
            max_key_bytes: limits::MAX_KEY_BYTES,
            max_value_bytes: limits::MAX_VALUE_BYTES,
            metadata: MetadataKind::Json,
            max_metadata_bytes: limits::MAX_METADATA_BYTES,
            min_ttl: Duration::from_secs(limits::MIN_EXPIRATION_TTL),
            conditional_writes: false,
            versions: false,
            reads_expiry: true,
            lists_metadata: true,
            ordered_listing: true,
            bulk_get_max: limits::BULK_GET_MAX_KEYS,
            bulk_put_max: limits::BULK_WRITE_MAX_PAIRS,
            bulk_delete_max: limits::BULK_DELETE_MAX_KEYS,
            budget: crate::policy::ClientLimit::CLOUDFLARE,
        }
    }

    /// Fastly KV Store: keys of 1 to 1,024 bytes without control characters, not under
    /// `.well-known/acme-challenge/`, values up to 25,000,000 bytes, text metadata up to 2,000
    /// bytes, whole-second TTLs, conditional writes and generations, listings without metadata
    /// (in the order the service gives), no bulk read, batch writes of 10,000 lines.
    pub fn fastly() -> Self {
        use crate::fastly::limits;
        Capabilities {
            provider: Provider::Fastly,
            max_key_bytes: limits::MAX_KEY_BYTES,
            max_value_bytes: limits::MAX_VALUE_BYTES,
            metadata: MetadataKind::Text,
            max_metadata_bytes: limits::MAX_METADATA_BYTES,
            min_ttl: Duration::from_secs(1),
            conditional_writes: true,
            versions: true,
            reads_expiry: false,
            lists_metadata: false,
            ordered_listing: false,
            bulk_get_max: 0,
            bulk_put_max: limits::BATCH_MAX_LINES,
            bulk_delete_max: 1,
            budget: crate::policy::ClientLimit::FASTLY_WRITES,
        }
    }

    /// Whether the provider accepts `key`, by its own rules and [`max_key_bytes`](Self::max_key_bytes).
    pub fn check_key(&self, key: &str) -> Result<(), InvalidInput> {
        match self.provider {
            Provider::Cloudflare => crate::cloudflare::limits::check_key(key, false)?,
            Provider::Fastly => crate::fastly::limits::check_key(key)?,
        }
        crate::keys::check_length(key, self.max_key_bytes)
    }

    /// Whether the provider accepts a write of a `value_len`-byte value (when known) under
    /// `key` with `write`, at `now` (UNIX seconds, for an absolute expiry).
    pub fn check_write(
        &self,
        key: &str,
        value_len: Option<u64>,
        write: &Write,
        now: i64,
    ) -> Result<(), InvalidInput> {
        self.check_key(key)?;
        crate::body::check_len(value_len, self.max_value_bytes)?;
        if let Some(metadata) = &write.metadata {
            self.check_metadata(metadata)?;
        }
        self.check_expiry(write.expiry, now)?;
        if write.condition != Condition::Always && !self.conditional_writes {
            return Err(InvalidInput::Unsupported {
                what: "conditional writes",
            });
        }
        Ok(())
    }

    /// Whether the provider keeps `metadata`: its kind, its rules, and
    /// [`max_metadata_bytes`](Self::max_metadata_bytes).
    pub fn check_metadata(&self, metadata: &Metadata) -> Result<(), InvalidInput> {
        let len = match metadata {
            Metadata::Text(text) => text.len(),
            Metadata::Json(json) => json.to_string().len(),
        };
        if len > self.max_metadata_bytes {
            return Err(InvalidInput::MetadataTooLarge {
                len,
                max: self.max_metadata_bytes,
            });
        }
        match (self.provider, metadata) {
            (Provider::Cloudflare, Metadata::Json(json)) => {
                crate::cloudflare::limits::metadata_json(json).map(drop)
            }
            (Provider::Fastly, Metadata::Text(text)) => crate::fastly::limits::check_metadata(text),
            (Provider::Cloudflare, Metadata::Text(_)) => Err(MetadataKind::Json.refusal()),
            (Provider::Fastly, Metadata::Json(_)) => Err(MetadataKind::Text.refusal()),
        }
    }

    /// The time to live a write with `expiry` asks for at `now`: `None` for none, an error if
    /// it is shorter than [`min_ttl`](Self::min_ttl) (an expiry already past included).
    pub fn ttl_of(&self, expiry: Expiry, now: i64) -> Result<Option<Duration>, InvalidInput> {
        let ttl = match expiry {
            Expiry::Never => return Ok(None),
            Expiry::After(ttl) => ttl,
            Expiry::At(at) => {
                let seconds = at.checked_sub(now).and_then(|s| u64::try_from(s).ok());
                Duration::from_secs(seconds.unwrap_or(0))
            }
        };
        if ttl < self.min_ttl {
            return Err(InvalidInput::ExpirationTtlTooShort {
                ttl: ttl.as_secs(),
                min: self.min_ttl.as_secs(),
            });
        }
        Ok(Some(ttl))
    }

    fn check_expiry(&self, expiry: Expiry, now: i64) -> Result<(), InvalidInput> {
        self.ttl_of(expiry, now).map(drop)
    }
}

/// An entry read by [`KvStore::get`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Entry {
    /// The value, streamed.
    pub value: ValueStream,
    /// Its metadata, if any.
    pub metadata: Option<Metadata>,
    /// When it expires, in UNIX seconds, where the store says ([`Capabilities::reads_expiry`]).
    pub expires_at: Option<i64>,
    /// Its version, where the store has them ([`Capabilities::versions`]).
    pub version: Option<u64>,
}

/// A record read whole by [`KvStore::bulk_get`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The value.
    pub value: Bytes,
    /// Its metadata, if any.
    pub metadata: Option<Metadata>,
    /// When it expires, in UNIX seconds, where the store says.
    pub expires_at: Option<i64>,
}

/// Metadata kept with an entry: text on Fastly, JSON on Cloudflare ([`MetadataKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Metadata {
    /// Text.
    Text(String),
    /// A JSON value.
    Json(serde_json::Value),
}

/// When a written entry expires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// Never.
    #[default]
    Never,
    /// At this UNIX time, in seconds (Fastly, which takes only a time to live, is sent the
    /// seconds left).
    At(i64),
    /// After this long, in whole seconds (rounded up).
    After(Duration),
}

/// The condition a write needs to hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// None: the write replaces whatever is there.
    #[default]
    Always,
    /// Only if the key has no entry.
    IfAbsent,
    /// Only if the entry's version is this one.
    IfVersion(u64),
}

/// What a [`KvStore::put`] writes besides the value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Write {
    /// The metadata, of the store's kind.
    pub metadata: Option<Metadata>,
    /// When the entry expires.
    pub expiry: Expiry,
    /// The condition the write needs.
    pub condition: Condition,
}

impl Write {
    /// A plain write: no metadata, no expiry, no condition.
    ///
    /// ```
    /// use std::time::Duration;
    /// use edgekv::kv::{Condition, Expiry, Metadata, Write};
    ///
    /// let write = Write::new()
    ///     .metadata(Metadata::Text("v1".into()))
    ///     .expiry(Expiry::After(Duration::from_secs(3600)))
    ///     .if_version(7);
    /// assert_eq!(write.condition, Condition::IfVersion(7));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `metadata` with the entry.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Expires the entry as `expiry` says.
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Writes only if the key has no entry.
    pub fn if_absent(mut self) -> Self {
        self.condition = Condition::IfAbsent;
        self
    }

    /// Writes only if the entry's version is `version`.
    pub fn if_version(mut self, version: u64) -> Self {
        self.condition = Condition::IfVersion(version);
        self
    }
}

/// One entry of a [`KvStore::bulk_put`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkItem {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Bytes,
    /// The metadata, of the store's kind.
    pub metadata: Option<Metadata>,
    /// When the entry expires.
    pub expiry: Expiry,
}

impl BulkItem {
    /// `value` under `key`, without metadata or expiry.
    ///
    /// ```
    /// let item = edgekv::kv::BulkItem::new("user/1", "{}").expiry(edgekv::kv::Expiry::At(2_000_000_000));
    /// assert_eq!(item.key, "user/1");
    /// ```
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        BulkItem {
            key: key.into(),
            value: value.into(),
            metadata: None,
            expiry: Expiry::Never,
        }
    }

    /// Keeps `metadata` with the entry.
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Expires the entry as `expiry` says.
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }
}

/// A page of a [`KvStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListPage {
    /// The keys of the page.
    pub keys: Vec<Listed>,
    /// Where the next page starts; `None` on the last.
    pub cursor: Option<String>,
}

/// A key as a listing gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listed {
    /// The key.
    pub key: String,
    /// Its metadata, where the listing gives it ([`Capabilities::lists_metadata`]).
    pub metadata: Option<Metadata>,
    /// When it expires, where the listing gives it.
    pub expires_at: Option<i64>,
}

/// The system clock in UNIX seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
