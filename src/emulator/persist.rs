//! Persistence of the emulator's state: an append-only log, replayed on start. The format is
//! documented in the `emulator` module's docs ("Persistence"); this is its one reader and writer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

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

/// The open log, appended to under the caller's lock.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Opens (creating if needed) the log in `dir` and returns it with the records to replay.
    pub(crate) fn open(dir: &Path) -> io::Result<(Journal, Vec<Record>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        if text.is_empty() {
            file.write_all(format!("{HEADER}\n").as_bytes())?;
            file.sync_all()?;
            sync_dir(dir)?;
            return Ok((Journal { file, path }, Vec::new()));
        }
        let (records, good_len) = read(&text)?;
        if good_len < text.len() as u64 {
            // A torn last record: cut it off so the next append starts on a line of its own.
            file.set_len(good_len)?;
            if good_len == 0 {
                file.write_all(format!("{HEADER}\n").as_bytes())?;
            }
            file.sync_all()?;
        }
        file.seek(io::SeekFrom::End(0))?;
        Ok((Journal { file, path }, records))
    }

    /// Appends records and waits until they are on disk.
    pub(crate) fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Replaces the log by one holding only `records` (the state as it stands): written beside
    /// it, synced, then renamed over it, so a crash leaves the old log or the new, never neither.
    pub(crate) fn compact(&mut self, records: &[Record]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temporary = dir.join(format!("{FILE_NAME}.compacting"));
        let mut file = File::create(&temporary)?;
        let mut buf = format!("{HEADER}\n").into_bytes();
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(dir)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

/// Parses a whole log: the records and the length of the part that holds them (shorter than
/// the text when the last record is torn).
pub(crate) fn read(text: &[u8]) -> io::Result<(Vec<Record>, u64)> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let header_end = text.iter().position(|b| *b == b'\n');
    match header_end {
        Some(end) if &text[..end] == HEADER.as_bytes() => {}
        // A crash while the header itself was written: nothing was acknowledged yet.
        None if HEADER.as_bytes().starts_with(text) => return Ok((Vec::new(), 0)),
        _ => {
            return Err(invalid(format!(
                "not an emulator log of this version (the first line is not {HEADER:?})"
            )));
        }
    }
    let mut records = Vec::new();
    let mut offset = header_end.map_or(text.len(), |end| end + 1);
    let mut good_len = offset;
    while offset < text.len() {
        let rest = &text[offset..];
        let (line, next, ended) = match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (&rest[..end], offset + end + 1, true),
            None => (rest, text.len(), false),
        };
        let last = next >= text.len();
        match serde_json::from_slice::<Record>(line) {
            Ok(record) if ended => {
                records.push(record);
                good_len = next;
            }
            // Unended or unreadable, the last line is a write cut short: never acknowledged.
            _ if last => break,
            Ok(_) | Err(_) => {
                return Err(invalid(format!(
                    "unreadable record at byte {offset} of the emulator log, before its last"
                )));
            }
        }
        offset = next;
    }
    Ok((records, good_len as u64))
}

/// Makes a file's creation or renaming in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Record {
        Record::FastlyPut {
            store: "s".into(),
            key: key.into(),
            value: Bytes::from_static(&[0, 255, b'\n']),
            generation: 1 << 40,
            metadata: Bytes::from_static(b"m"),
            expires: Some(1_700_000_000),
        }
    }

    fn log(records: &[Record]) -> Vec<u8> {
        let mut text = format!("{HEADER}\n").into_bytes();
        for record in records {
            serde_json::to_writer(&mut text, record).unwrap();
            text.push(b'\n');
        }
        text
    }

    #[test]
    fn a_torn_last_record_is_ignored() {
        let whole = log(&[put("a"), put("b")]);
        let kept = log(&[put("a")]);
        // Every cut inside the last record (with or without its newline) keeps the first.
        for cut in kept.len()..whole.len() {
            let (records, good_len) = read(&whole[..cut]).unwrap();
            assert_eq!(records, vec![put("a")], "cut at {cut}");
            assert_eq!(good_len, kept.len() as u64);
        }
        let (records, good_len) = read(&whole).unwrap();
        assert_eq!(records, vec![put("a"), put("b")]);
        assert_eq!(good_len, whole.len() as u64);
    }

    #[test]
    fn a_torn_header_is_an_empty_log_and_a_bad_middle_record_is_refused() {
        assert_eq!(read(&HEADER.as_bytes()[..5]).unwrap().0, Vec::new());
        let mut text = log(&[put("a")]);
        text.extend_from_slice(b"{not json\n");
        text.extend_from_slice(&log(&[put("b")])[HEADER.len() + 1..]);
        assert_eq!(read(&text).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(read(b"something else\n").is_err());
    }

    #[test]
    fn open_cuts_a_torn_tail_and_appends_after_it() {
        let dir = std::env::temp_dir().join(format!(
            "edgekv-journal-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut text = log(&[put("a")]);
        text.extend_from_slice(br#"{"op":"fastly_put","sto"#);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), &text).unwrap();
        let (mut journal, records) = Journal::open(&dir).unwrap();
        assert_eq!(records, vec![put("a")]);
        journal.append(&[put("b")]).unwrap();
        drop(journal);
        let (_, records) = Journal::open(&dir).unwrap();
        assert_eq!(records, vec![put("a"), put("b")]);

        // A crash while the header was written leaves a log that starts again from nothing.
        std::fs::write(dir.join(FILE_NAME), &HEADER.as_bytes()[..7]).unwrap();
        let (mut journal, records) = Journal::open(&dir).unwrap();
        assert!(records.is_empty());
        journal.append(&[put("c")]).unwrap();
        drop(journal);
        assert_eq!(Journal::open(&dir).unwrap().1, vec![put("c")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
