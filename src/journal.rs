//! An append-only log of JSON records, one per line under a header line, synced before an
//! append returns: what the emulator's `--persist` keeps its state in, and what a transfer job
//! journals its progress in. Pure Rust and a stable, readable format; a crash can tear only the
//! last line, which was never acknowledged, and opening cuts it off.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::marker::PhantomData;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An open log of `R` records, appended to under the caller's lock.
#[derive(Debug)]
pub(crate) struct Log<R> {
    file: File,
    /// Where the log is, and its header: what compacting rewrites (the emulator compacts; a
    /// job's journal only appends).
    #[cfg(feature = "emulator")]
    path: std::path::PathBuf,
    #[cfg(feature = "emulator")]
    header: &'static str,
    records: PhantomData<fn(R)>,
}

impl<R: Serialize + DeserializeOwned> Log<R> {
    /// Opens (creating if needed) the log `file_name` in `dir`, whose first line must be
    /// `header`, and returns it with the records it holds.
    pub(crate) fn open(
        dir: &Path,
        file_name: &str,
        header: &'static str,
    ) -> io::Result<(Self, Vec<R>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        lock(&file, &path)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let log = |file| Log {
            file,
            #[cfg(feature = "emulator")]
            path: path.clone(),
            #[cfg(feature = "emulator")]
            header,
            records: PhantomData,
        };
        if text.is_empty() {
            file.write_all(format!("{header}\n").as_bytes())?;
            file.sync_all()?;
            sync_dir(dir)?;
            return Ok((log(file), Vec::new()));
        }
        let (records, good_len) = read(&text, header)?;
        if good_len < text.len() as u64 {
            // A torn last record: cut it off so the next append starts on a line of its own.
            file.set_len(good_len)?;
            if good_len == 0 {
                file.write_all(format!("{header}\n").as_bytes())?;
            }
            file.sync_all()?;
        }
        file.seek(io::SeekFrom::End(0))?;
        Ok((log(file), records))
    }

    /// Appends records and waits until they are on disk.
    pub(crate) fn append(&mut self, records: &[R]) -> io::Result<()> {
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

    #[cfg(feature = "emulator")]
    /// Replaces the log by one holding only `records` (the state as it stands): written beside
    /// it, synced, then renamed over it, so a crash leaves the old log or the new, never neither.
    pub(crate) fn compact(&mut self, records: &[R]) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".compacting");
        let temporary = std::path::PathBuf::from(temporary);
        let mut file = File::create(&temporary)?;
        // Locked before it takes the log's name, and kept: the log is never unlocked.
        lock(&file, &self.path)?;
        let mut buf = format!("{}\n", self.header).into_bytes();
        for record in records {
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
        }
        file.write_all(&buf)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        sync_dir(dir)?;
        // Written from its start to its end: appends go on at the end.
        self.file = file;
        Ok(())
    }
}

/// Takes the log: a second job on the same journal, or a second emulator on the same
/// directory, would interleave its records with the first's. The lock goes with the file's
/// last handle, or the process, however it ends. A holder that is letting go (a job just
/// cancelled, whose last record is still being synced) is waited for, briefly.
fn lock(file: &File, path: &Path) -> io::Result<()> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is in use by another job or emulator, in this process or another",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// Parses a whole log: the records and the length of the part that holds them (shorter than
/// the text when the last record is torn).
pub(crate) fn read<R: DeserializeOwned>(text: &[u8], header: &str) -> io::Result<(Vec<R>, u64)> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let header_end = text.iter().position(|b| *b == b'\n');
    match header_end {
        Some(end) if &text[..end] == header.as_bytes() => {}
        // A crash while the header itself was written: nothing was acknowledged yet.
        None if header.as_bytes().starts_with(text) => return Ok((Vec::new(), 0)),
        _ => {
            return Err(invalid(format!(
                "not a log of this kind and version (the first line is not {header:?})"
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
        match serde_json::from_slice::<R>(line) {
            Ok(record) if ended => {
                records.push(record);
                good_len = next;
            }
            // Unended or unreadable, the last line is a write cut short: never acknowledged.
            _ if last => break,
            Ok(_) | Err(_) => {
                return Err(invalid(format!(
                    "unreadable record at byte {offset} of {header:?}, before its last"
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

    const HEADER: &str = "edgekv-test-log v1";
    const FILE_NAME: &str = "test.log";

    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Put {
        key: String,
        value: Vec<u8>,
    }

    fn put(key: &str) -> Put {
        Put {
            key: key.into(),
            value: vec![0, 255, b'\n'],
        }
    }

    fn log(records: &[Put]) -> Vec<u8> {
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
            let (records, good_len) = read::<Put>(&whole[..cut], HEADER).unwrap();
            assert_eq!(records, vec![put("a")], "cut at {cut}");
            assert_eq!(good_len, kept.len() as u64);
        }
        let (records, good_len) = read::<Put>(&whole, HEADER).unwrap();
        assert_eq!(records, vec![put("a"), put("b")]);
        assert_eq!(good_len, whole.len() as u64);
    }

    #[test]
    fn a_torn_header_is_an_empty_log_and_a_bad_middle_record_is_refused() {
        assert_eq!(
            read::<Put>(&HEADER.as_bytes()[..5], HEADER).unwrap().0,
            Vec::new()
        );
        let mut text = log(&[put("a")]);
        text.extend_from_slice(b"{not json\n");
        text.extend_from_slice(&log(&[put("b")])[HEADER.len() + 1..]);
        let refused = read::<Put>(&text, HEADER).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        assert!(read::<Put>(b"something else\n", HEADER).is_err());
    }

    #[test]
    fn open_cuts_a_torn_tail_and_appends_after_it() {
        let dir = std::env::temp_dir().join(format!(
            "edgekv-journal-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let open = || Log::<Put>::open(&dir, FILE_NAME, HEADER).unwrap();
        let mut text = log(&[put("a")]);
        text.extend_from_slice(br#"{"key":"b","val"#);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), &text).unwrap();
        let (mut journal, records) = open();
        assert_eq!(records, vec![put("a")]);
        journal.append(&[put("b")]).unwrap();
        let second = Log::<Put>::open(&dir, FILE_NAME, HEADER).err().unwrap();
        assert_eq!(
            second.kind(),
            io::ErrorKind::ResourceBusy,
            "one writer a log"
        );
        drop(journal);
        let (mut journal, records) = open();
        assert_eq!(records, vec![put("a"), put("b")]);

        // Compacting keeps only what it is given, and the log goes on after it.
        journal.compact(&[put("z")]).unwrap();
        journal.append(&[put("y")]).unwrap();
        let second = Log::<Put>::open(&dir, FILE_NAME, HEADER).err().unwrap();
        assert_eq!(
            second.kind(),
            io::ErrorKind::ResourceBusy,
            "locked after compacting"
        );
        drop(journal);
        assert_eq!(open().1, vec![put("z"), put("y")]);

        // A crash while the header was written leaves a log that starts again from nothing.
        std::fs::write(dir.join(FILE_NAME), &HEADER.as_bytes()[..7]).unwrap();
        let (mut journal, records) = open();
        assert!(records.is_empty());
        journal.append(&[put("c")]).unwrap();
        drop(journal);
        assert_eq!(open().1, vec![put("c")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
