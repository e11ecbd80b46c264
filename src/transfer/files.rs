//! A store to and from files: Cloudflare's bulk JSON (what `wrangler kv bulk put` reads),
//! Fastly's batch lines (what the Fastly CLI's `--file` reads), and a directory of one file per
//! key. Files are read and written as streams: an export never holds more than a chunk.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use super::carry::{self, NotCarried};
use super::journal::{ChunkDone, JobId};
use super::{
    Begun, CopyReport, Counters, JobOptions, Pending, SLICE, Tracker, WRITE_BYTES, add, begin,
    ended_before, finish_journal, read_all, record_chunk, write_pending,
};
use crate::bulk::FailedKey;
use crate::error::Error;
use crate::kv::{KvStore, Metadata, MetadataKind, Record, unix_now};
use crate::transport::observed::{counting, counting_stream};

/// A file format of [`export`] and [`import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Cloudflare's bulk JSON: an array of `{key, value, expiration, expiration_ttl, metadata,
    /// base64}`, as `wrangler kv bulk put` reads it. Values that are not UTF-8 are base64 with
    /// `"base64": true`; metadata is JSON.
    Wrangler,
    /// Fastly's batch lines, one JSON object a line (`KvStoreUpsertBatch`): `key`, base64
    /// `value`, `metadata` (text) and `time_to_live_sec`, as the Fastly CLI's `--file` reads
    /// them. The time to live is counted from the export, as the format has no absolute
    /// expiry: imported later, an entry lives that much longer.
    FastlyNdjson,
    /// A directory: per key, a file of the value's bytes and a `.meta` file beside it holding
    /// the key, metadata and expiry (JSON). Names are the key percent-encoded (every byte but
    /// `a-z`, `0-9`, `-` and `_`, so no name is `.`/`..`, holds a `/`, or differs from another
    /// only in case); a name too long for a file system is hashed, its `.meta` still holding the
    /// key. Nothing is written outside the directory. An import reads the `.meta` files (a
    /// value file without one is not an entry), their names held in memory, sorted, so that a
    /// resumed import meets them in the same order.
    Directory,
}

impl Format {
    /// The format a path names: `*.json` Cloudflare's bulk JSON, `*.ndjson` Fastly's lines,
    /// anything else a directory.
    pub fn of(path: &Path) -> Format {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Format::Wrangler,
            Some("ndjson") | Some("jsonl") => Format::FastlyNdjson,
            _ => Format::Directory,
        }
    }

    /// The kind of metadata the format keeps.
    fn metadata(self) -> MetadataKind {
        match self {
            Format::Wrangler => MetadataKind::Json,
            Format::FastlyNdjson | Format::Directory => MetadataKind::Text,
        }
    }
}

/// One element of Cloudflare's bulk JSON.
#[derive(Serialize, Deserialize)]
struct WranglerItem {
    key: String,
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration_ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    base64: bool,
}

/// One line of Fastly's batch format.
#[derive(Serialize, Deserialize)]
struct FastlyLine {
    key: String,
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_to_live_sec: Option<u64>,
}

/// A directory entry's `.meta` file.
#[derive(Serialize, Deserialize)]
struct DirectoryMeta {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// Writes every key under [`JobOptions::prefix`] of `source` to `to` in `format`, a listing
/// page at a time. A key whose metadata the format cannot hold as it is (Fastly text that is not
/// JSON, for Cloudflare's format) is reported failed, not altered; a key that has expired is
/// skipped.
///
/// With [`JobOptions::journal`] it is resumable: each page is journaled once its entries are
/// in the file and synced, with the file's length then; a run again cuts the file back to the
/// last page journaled (what a killed run wrote after it) and lists on from there. The file or
/// directory must be left to the job meanwhile. A directory's files are not synced one by one:
/// a killed run loses none, a power cut may; and the entries of the page in flight at a kill
/// stay in the directory, written again by the run after (a key deleted from the store in
/// between stays too). Without a journal, a file is written anew and a
/// directory must be new or empty.
pub async fn export(
    source: &dyn KvStore,
    to: &Path,
    format: Format,
    options: &JobOptions,
) -> Result<CopyReport, Error> {
    let file = std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf());
    let job = JobId::new(
        "export",
        &options.prefix,
        source.id(),
        format!("file:{format:?}:{}", file.display()),
    );
    if options.dry_run {
        let report = CopyReport {
            listed: super::count_keys(source, &options.prefix).await?,
            ..CopyReport::default()
        };
        return Ok(report);
    }
    if let Some(max) = options.max_duration.filter(|_| !super::resuming(options)) {
        let keys = match options.expected_keys {
            Some(keys) => keys,
            None => super::count_keys(source, &options.prefix).await?,
        };
        let capabilities = source.capabilities();
        let reading = super::estimate(keys, capabilities, capabilities).source;
        super::within(max, "source", reading.duration)?;
    }
    // A job's first run refuses a directory that is not empty before it starts a journal; a run
    // again finds its own entries there.
    let first_run = options.journal.as_ref().is_none_or(|path| !path.exists());
    let mut sink = None;
    if first_run {
        sink = Some(Sink::create(to, format, false).await.map_err(file_error)?);
    }
    let Begun {
        journal,
        resume,
        mut report,
    } = begin(options, job).await?;
    if resume.finished {
        return Ok(report);
    }
    let mut sink = match (sink, resume.before.last()) {
        (Some(sink), _) => sink,
        (None, None) => Sink::create(to, format, true).await.map_err(file_error)?,
        (None, Some(done)) => Sink::reopen(to, format, done.written, report.copied > 0)
            .await
            .map_err(file_error)?,
    };
    let tracker = Tracker::new(&report, resume.before.len() as u64);
    let counters = Counters::default();
    if !resume.listing_over() {
        let pages = source.list(&options.prefix, resume.cursor.clone());
        let mut pages = counting_stream(counters.source.clone(), pages);
        let mut seq = resume.watermark;
        let mut from = resume.cursor.clone();
        while let Some(page) = pages.try_next().await? {
            let mut done = ChunkDone {
                seq,
                from: std::mem::replace(&mut from, page.cursor.clone()),
                next: page.cursor,
                listed: page.keys.len() as u64,
                ..ChunkDone::default()
            };
            seq += 1;
            let keys: Vec<String> = page.keys.into_iter().map(|k| k.key).collect();
            // A bulk read's worth at a time, written before the next is read.
            for (slice, part) in keys.chunks(SLICE).enumerate() {
                let records = counting(&counters.source, read_all(source, part.to_vec())).await?;
                for (position, (key, record)) in records.into_iter().enumerate() {
                    let position = slice * SLICE + position;
                    let Some(record) = record else {
                        done.skipped += 1;
                        continue;
                    };
                    let size = record.value.len() as u64;
                    match sink.write(&key, record).await {
                        Ok(()) => {
                            done.copied += 1;
                            done.bytes += size;
                        }
                        Err(Refusal::Skip) => done.skipped += 1,
                        Err(Refusal::Key(reason)) => done.failed.push(
                            FailedKey {
                                key,
                                index: position as u64,
                                reason,
                                failure: crate::bulk::Failure::Refused,
                            }
                            .into(),
                        ),
                        Err(Refusal::Io(error)) => return Err(file_error(error)),
                    }
                }
            }
            done.written = sink.sync().await.map_err(file_error)?;
            if let Some(journal) = &journal {
                record_chunk(journal.clone(), done.clone()).await?;
            }
            add(&mut report, &done);
            tracker.chunk_done(options, &done, &counters);
        }
    }
    sink.finish().await.map_err(file_error)?;
    if let Some(journal) = journal {
        finish_journal(journal).await?;
    }
    counters.report(&mut report);
    Ok(report)
}

/// Writes every entry of `from` (in `format`) under [`JobOptions::prefix`] to `destination`
/// (the others count as skipped), in its bulk writes of at most 1,000 entries. With
/// [`JobOptions::journal`] it is resumable: each chunk is journaled once written, and a run
/// again reads past the entries of the chunks done; the journal names the file's size and time
/// of change, and is refused for a file that changed since. An entry the
/// file cannot give (a line that is not the format) or the destination cannot hold is reported
/// failed, under its place in the file, and the rest go on; a request that fails as a whole (an
/// outage, a credential) ends the import with that error.
pub async fn import(
    from: &Path,
    format: Format,
    destination: &dyn KvStore,
    options: &JobOptions,
) -> Result<CopyReport, Error> {
    const CHUNK: usize = 1000;
    let file = std::path::absolute(from).unwrap_or_else(|_| from.to_path_buf());
    // The file as it is now (its size and time of change): a journal of the file before it
    // changed is refused, not resumed past entries that are no longer the ones done.
    let stamp = tokio::fs::metadata(from).await.map_err(file_error)?;
    let changed = stamp
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let job = JobId::new(
        "import",
        &options.prefix,
        format!(
            "file:{format:?}:{}:{}:{}",
            file.display(),
            stamp.len(),
            changed.map_or(0, |t| t.as_nanos())
        ),
        destination.id(),
    );
    if let Some(max) = options.max_duration.filter(|_| !super::resuming(options)) {
        let entries = match options.expected_keys {
            Some(entries) => entries,
            None => count_entries(from, format).await.map_err(file_error)?,
        };
        let writes = entries.div_ceil(CHUNK as u64);
        let budget = destination.capabilities().budget;
        super::within(max, "destination", super::at_budget(writes, budget))?;
    }
    let Begun {
        journal,
        resume,
        mut report,
    } = begin(options, job).await?;
    if ended_before(&journal, &resume).await? {
        return Ok(report);
    }
    let tracker = Tracker::new(&report, resume.before.len() as u64);
    // Chunks are read from the file in order, so the journal's last chunk says where to go on.
    let skip = resume.before.last().map_or(0, |done| done.consumed);
    let mut entries = Source::open(from, format).await.map_err(file_error)?;
    let now = unix_now();
    let capabilities = destination.capabilities();
    let counters = Counters::default();
    // Written as a copy writes: one bulk write per 1,000 entries (or 64 MiB of values), each
    // chunk journaled once the destination acknowledged it.
    let mut pending = Pending::default();
    let mut done = ChunkDone::default();
    let mut index = 0u64;
    let mut seq = resume.watermark;
    loop {
        let next = entries.next().await.map_err(file_error)?;
        let end = next.is_none();
        if let Some(entry) = next {
            let place = index;
            index += 1;
            if place < skip {
                continue;
            }
            done.listed += 1;
            // Only entries under the prefix, as every job keeps to it.
            if let Ok((key, _)) = &entry
                && !key.starts_with(&options.prefix)
            {
                done.skipped += 1;
                continue;
            }
            match entry.and_then(|(key, record)| {
                carry::item_for(&key, record, capabilities, now).map_err(|why| match why {
                    NotCarried::Refused(reason) => (key, reason),
                    NotCarried::Expiring => (key, String::new()),
                })
            }) {
                Ok(item) => pending.push(place, item),
                Err((_, reason)) if reason.is_empty() => done.skipped += 1,
                Err((key, reason)) => done.failed.push(
                    FailedKey {
                        key,
                        index: place,
                        reason,
                        failure: crate::bulk::Failure::Refused,
                    }
                    .into(),
                ),
            }
        }
        // A chunk is 1,000 entries read (written or not: a file of bad lines journals its
        // progress too), or fewer holding 64 MiB of values.
        if done.listed == CHUNK as u64 || pending.bytes >= WRITE_BYTES || end {
            let written = std::mem::take(&mut pending);
            if !options.dry_run {
                write_pending(destination, written, &mut done, &counters).await?;
            }
            let mut chunk = std::mem::take(&mut done);
            chunk.seq = seq;
            chunk.consumed = index;
            // A file has no cursor: the chain is of chunks, each after the one before.
            chunk.from = (seq > 0).then(String::new);
            chunk.next = (!end).then(String::new);
            seq += 1;
            if let Some(journal) = &journal {
                record_chunk(journal.clone(), chunk.clone()).await?;
            }
            add(&mut report, &chunk);
            tracker.chunk_done(options, &chunk, &counters);
        }
        if end {
            if let Some(journal) = journal {
                finish_journal(journal).await?;
            }
            counters.report(&mut report);
            return Ok(report);
        }
    }
}

fn file_error(error: std::io::Error) -> Error {
    Error::from_caller(error)
}

/// Why one entry is not written to a file.
enum Refusal {
    /// Nothing to write (it has expired).
    Skip,
    /// The format cannot hold it as it is.
    Key(String),
    /// The file could not be written: the export ends.
    Io(std::io::Error),
}

/// Where an export writes.
enum Sink {
    /// Cloudflare's bulk JSON or Fastly's lines.
    File {
        file: tokio::io::BufWriter<tokio::fs::File>,
        format: Format,
        /// Bytes written so far, from the file's start.
        written: u64,
        /// No element written yet (Cloudflare's JSON puts a comma before every other one).
        first: bool,
    },
    Directory(PathBuf),
}

/// Where Cloudflare's bulk JSON starts.
const WRANGLER_START: &[u8] = b"[";

impl Sink {
    /// A new export: a file written anew, or a directory that is new or empty (or, for `again`,
    /// a run of the same job before its first chunk was journaled, holding that run's entries).
    async fn create(to: &Path, format: Format, again: bool) -> std::io::Result<Sink> {
        if format == Format::Directory {
            // Into a new or empty directory only: an older export's entries left beside this
            // one would come back on import as keys the store no longer has.
            tokio::fs::create_dir_all(to).await?;
            if !again && tokio::fs::read_dir(to).await?.next_entry().await?.is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} is not empty: export into a new directory", to.display()),
                ));
            }
            return Ok(Sink::Directory(to.to_path_buf()));
        }
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(to).await?);
        let mut written = 0;
        if format == Format::Wrangler {
            file.write_all(WRANGLER_START).await?;
            written = WRANGLER_START.len() as u64;
        }
        Ok(Sink::File {
            file,
            format,
            written,
            first: true,
        })
    }

    /// The export of a run before, cut back to its last journaled chunk's `written` bytes.
    async fn reopen(to: &Path, format: Format, written: u64, any: bool) -> std::io::Result<Sink> {
        if format == Format::Directory {
            return Ok(Sink::Directory(to.to_path_buf()));
        }
        let mut file = tokio::fs::OpenOptions::new().write(true).open(to).await?;
        let length = file.metadata().await?.len();
        if length < written || (format == Format::Wrangler && written < 1) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds {length} bytes, fewer than the {written} its journal says were \
                     written: it is not this export's file (remove the journal to start over)",
                    to.display()
                ),
            ));
        }
        file.set_len(written).await?;
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(written)).await?;
        Ok(Sink::File {
            file: tokio::io::BufWriter::new(file),
            format,
            written,
            first: !any,
        })
    }

    async fn write(&mut self, key: &str, record: Record) -> Result<(), Refusal> {
        let format = match self {
            Sink::File { format, .. } => *format,
            Sink::Directory(_) => Format::Directory,
        };
        let metadata = match record.metadata {
            None => None,
            Some(m) => Some(carry::metadata_for(m, format.metadata()).map_err(Refusal::Key)?),
        };
        let now = unix_now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(Refusal::Skip);
        }
        let io = |e: serde_json::Error| Refusal::Io(e.into());
        match self {
            Sink::File {
                file,
                format: Format::Wrangler,
                written,
                first,
            } => {
                let (value, base64) = match std::str::from_utf8(&record.value) {
                    Ok(text) => (text.to_string(), false),
                    Err(_) => (
                        base64::engine::general_purpose::STANDARD.encode(&record.value),
                        true,
                    ),
                };
                let item = WranglerItem {
                    key: key.to_string(),
                    value,
                    expiration: record.expires_at,
                    expiration_ttl: None,
                    metadata: metadata.map(|m| match m {
                        Metadata::Json(json) => json,
                        Metadata::Text(text) => serde_json::Value::String(text),
                    }),
                    base64,
                };
                let mut line = if *first {
                    b"\n".to_vec()
                } else {
                    b",\n".to_vec()
                };
                serde_json::to_writer(&mut line, &item).map_err(io)?;
                file.write_all(&line).await.map_err(Refusal::Io)?;
                *first = false;
                *written += line.len() as u64;
                Ok(())
            }
            Sink::File { file, written, .. } => {
                let line = FastlyLine {
                    key: key.to_string(),
                    value: base64::engine::general_purpose::STANDARD.encode(&record.value),
                    metadata: metadata.map(text_of),
                    time_to_live_sec: record
                        .expires_at
                        .map(|at| u64::try_from(at.saturating_sub(now)).unwrap_or(1).max(1)),
                };
                let mut bytes = serde_json::to_vec(&line).map_err(io)?;
                bytes.push(b'\n');
                file.write_all(&bytes).await.map_err(Refusal::Io)?;
                *written += bytes.len() as u64;
                Ok(())
            }
            Sink::Directory(dir) => {
                let meta = DirectoryMeta {
                    key: key.to_string(),
                    metadata: metadata.map(text_of),
                    expires_at: record.expires_at,
                };
                let meta = serde_json::to_vec(&meta).map_err(io)?;
                let name = free_name(dir, key).await.map_err(Refusal::Io)?;
                replace(dir, &name, &record.value)
                    .await
                    .map_err(Refusal::Io)?;
                replace(dir, &format!("{name}.meta"), &meta)
                    .await
                    .map_err(Refusal::Io)
            }
        }
    }

    /// Puts what was written on disk, and says how many bytes the file holds (a directory: 0).
    async fn sync(&mut self) -> std::io::Result<u64> {
        match self {
            Sink::File { file, written, .. } => {
                file.flush().await?;
                // A pipe or a terminal (an export to standard output) has nothing to sync.
                if file.get_ref().metadata().await?.is_file() {
                    file.get_ref().sync_data().await?;
                }
                Ok(*written)
            }
            Sink::Directory(_) => Ok(0),
        }
    }

    async fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::File {
                mut file, format, ..
            } => {
                if format == Format::Wrangler {
                    file.write_all(b"\n]\n").await?;
                }
                file.flush().await?;
                match file.get_ref().metadata().await?.is_file() {
                    true => file.get_ref().sync_all().await,
                    false => Ok(()),
                }
            }
            Sink::Directory(_) => Ok(()),
        }
    }
}

fn text_of(metadata: Metadata) -> String {
    match metadata {
        Metadata::Text(text) => text,
        Metadata::Json(json) => json.to_string(),
    }
}

/// The longest file name written (most file systems allow 255 bytes; `.meta` is added).
const MAX_NAME: usize = 200;

/// `key` as a file name: percent-encoded but for `a-z`, `0-9`, `-` and `_`.
pub(crate) fn escaped(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(byte as char),
            other => name.push_str(&format!("%{other:02X}")),
        }
    }
    name
}

/// A name in `dir` for `key` no other key has taken: its escaped form, or for a long one a hash
/// of it, numbered on (unlikely) collision; the `.meta` beside it holds the key either way.
async fn free_name(dir: &Path, key: &str) -> std::io::Result<String> {
    let name = escaped(key);
    if name.len() <= MAX_NAME {
        return Ok(name);
    }
    // FNV-1a: the same name for the same key on every run and Rust release, so a resumed
    // export finds the file a run before wrote.
    use std::hash::Hasher as _;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(key.as_bytes());
    let hash = hasher.finish();
    for n in 0u32..1000 {
        // `=` is never in an escaped name (it is `%3D` there), in any case.
        let candidate = format!("={hash:016x}_{n}");
        let meta = dir.join(format!("{candidate}.meta"));
        match tokio::fs::symlink_metadata(&meta).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(candidate),
            Err(e) => return Err(e),
            Ok(_) => {
                let taken = read_regular(&meta, MAX_META_BYTES).await?.ok();
                let taken = taken.and_then(|b| serde_json::from_slice::<DirectoryMeta>(&b).ok());
                if taken.is_some_and(|t| t.key == key) {
                    return Ok(candidate);
                }
            }
        }
    }
    Err(std::io::Error::other(
        "a thousand keys share this name's hash: the directory is not this export's",
    ))
}

/// The entries of `from`, read through once.
async fn count_entries(from: &Path, format: Format) -> std::io::Result<u64> {
    let mut entries = Source::open(from, format).await?;
    let mut count = 0u64;
    while entries.next().await?.is_some() {
        count += 1;
    }
    Ok(count)
}

/// Writes `bytes` as `dir/name`, replacing what is there without following it: written beside
/// it first (`name.partial`; no entry's name holds a dot), then renamed over it, so a link
/// planted at the name is replaced, never written through, and a kill leaves the old file or
/// the new one, never half of one.
async fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let partial = dir.join(format!("{name}.partial"));
    match tokio::fs::remove_file(&partial).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // `create_new` follows no link: it fails on any entry already there.
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&partial, dir.join(name)).await
}

/// One entry read from a file: the key and its record, or the place's key (or a stand-in) and
/// why it could not be read.
type Read = Result<(String, Record), (String, String)>;

/// Where an import reads.
enum Source {
    /// Parsed on a blocking thread, entries sent over a small channel.
    Wrangler(tokio::sync::mpsc::Receiver<std::io::Result<Read>>),
    Ndjson {
        file: tokio::io::BufReader<tokio::fs::File>,
        number: u64,
    },
    Directory(std::vec::IntoIter<PathBuf>),
}

/// The largest `.meta` file an import reads (a key, metadata and expiry are a few KiB).
const MAX_META_BYTES: u64 = 1 << 20;
/// The largest value file an import reads (above both providers' value limits).
const MAX_VALUE_FILE_BYTES: u64 = 32 << 20;
/// The longest line of Fastly's batch format, or element of Cloudflare's bulk JSON, an import
/// reads (a 25 MB value is 33.4 MB of base64).
const MAX_LINE_BYTES: u64 = 40 << 20;

impl Source {
    async fn open(from: &Path, format: Format) -> std::io::Result<Source> {
        Ok(match format {
            Format::Wrangler => {
                let file = std::fs::File::open(from)?;
                // One entry waits while the import takes another: values can be 25 MiB.
                let (sender, receiver) = tokio::sync::mpsc::channel(1);
                tokio::task::spawn_blocking(move || wrangler_elements(file, sender));
                Source::Wrangler(receiver)
            }
            Format::FastlyNdjson => Source::Ndjson {
                file: tokio::io::BufReader::new(tokio::fs::File::open(from).await?),
                number: 0,
            },
            Format::Directory => {
                let mut metas = Vec::new();
                let mut entries = tokio::fs::read_dir(from).await?;
                while let Some(entry) = entries.next_entry().await? {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "meta") {
                        metas.push(path);
                    }
                }
                metas.sort();
                Source::Directory(metas.into_iter())
            }
        })
    }

    /// The next entry; `None` at the end.
    async fn next(&mut self) -> std::io::Result<Option<Read>> {
        match self {
            Source::Wrangler(receiver) => receiver.recv().await.transpose(),
            Source::Ndjson { file, number } => loop {
                use tokio::io::AsyncReadExt as _;
                let mut line = Vec::new();
                let read = (&mut *file)
                    .take(MAX_LINE_BYTES + 1)
                    .read_until(b'\n', &mut line)
                    .await?;
                if read == 0 {
                    return Ok(None);
                }
                *number += 1;
                let place = format!("(line {number})");
                if line.len() as u64 > MAX_LINE_BYTES {
                    // Not a line of the format: the rest of it is read past, a MiB at a time.
                    while !line.ends_with(b"\n") {
                        line.clear();
                        if (&mut *file)
                            .take(1 << 20)
                            .read_until(b'\n', &mut line)
                            .await?
                            == 0
                        {
                            break;
                        }
                    }
                    let why = format!("line {number} is over {MAX_LINE_BYTES} bytes");
                    return Ok(Some(Err((place, why))));
                }
                let Ok(text) = std::str::from_utf8(&line) else {
                    return Ok(Some(Err((place, format!("line {number} is not UTF-8")))));
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Ok(Some(ndjson_entry(text, *number)));
            },
            Source::Directory(metas) => {
                let Some(meta_path) = metas.next() else {
                    return Ok(None);
                };
                let place = meta_path.display().to_string();
                let bytes = match read_regular(&meta_path, MAX_META_BYTES).await? {
                    Ok(bytes) => bytes,
                    Err(why) => return Ok(Some(Err((place, why)))),
                };
                let meta: DirectoryMeta = match serde_json::from_slice(&bytes) {
                    Ok(meta) => meta,
                    Err(e) => return Ok(Some(Err((place, format!("unreadable: {e}"))))),
                };
                // The value beside it, a regular file: a link could make an import upload any
                // file on the machine.
                let value_path = meta_path.with_extension("");
                let value = match read_regular(&value_path, MAX_VALUE_FILE_BYTES).await? {
                    Ok(value) => value,
                    Err(why) => return Ok(Some(Err((meta.key, why)))),
                };
                let record = Record {
                    value: Bytes::from(value),
                    metadata: meta.metadata.map(Metadata::Text),
                    expires_at: meta.expires_at,
                };
                Ok(Some(Ok((meta.key, record))))
            }
        }
    }
}

/// The bytes of `path` if it is a regular file (not a link) of at most `max` bytes; else why
/// not. An error reading a file that is there ends the import.
async fn read_regular(path: &Path, max: u64) -> std::io::Result<Result<Vec<u8>, String>> {
    let metadata = match tokio::fs::symlink_metadata(path).await {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(format!("{} is missing", path.display())));
        }
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() {
        return Ok(Err(format!("{} is not a regular file", path.display())));
    }
    if metadata.len() > max {
        return Ok(Err(format!("{} is over {max} bytes", path.display())));
    }
    Ok(Ok(tokio::fs::read(path).await?))
}

fn ndjson_entry(line: &str, number: u64) -> Read {
    let place = || format!("(line {number})");
    let line: FastlyLine = serde_json::from_str(line)
        .map_err(|e| (place(), format!("line {number} is not a batch line: {e}")))?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(&line.value)
        .map_err(|_| {
            (
                line.key.clone(),
                format!("line {number}: the value is not base64"),
            )
        })?;
    let expires_at = line
        .time_to_live_sec
        .map(|ttl| unix_now().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    Ok((
        line.key,
        Record {
            value: Bytes::from(value),
            metadata: line.metadata.map(Metadata::Text),
            expires_at,
        },
    ))
}

fn wrangler_entry(item: WranglerItem) -> Read {
    let value = if item.base64 {
        base64::engine::general_purpose::STANDARD
            .decode(&item.value)
            .map(Bytes::from)
            .map_err(|_| (item.key.clone(), "the value is not base64".to_string()))?
    } else {
        Bytes::from(item.value)
    };
    let expires_at = match (item.expiration, item.expiration_ttl) {
        (Some(at), _) => Some(at),
        (None, Some(ttl)) => {
            Some(unix_now().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)))
        }
        (None, None) => None,
    };
    Ok((
        item.key,
        Record {
            value,
            metadata: item.metadata.map(Metadata::Json),
            expires_at,
        },
    ))
}

/// Reads Cloudflare's bulk JSON array element by element (never the whole array), sending each
/// entry; stops when the receiver is gone.
fn wrangler_elements(
    file: std::fs::File,
    sender: tokio::sync::mpsc::Sender<std::io::Result<Read>>,
) {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Elements<'a>(
        &'a tokio::sync::mpsc::Sender<std::io::Result<Read>>,
        &'a AtomicU64,
    );

    impl<'de> Visitor<'de> for Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of {key, value} objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut number = 0u64;
            // Each element as its JSON text first (held as text, not as a tree of values), so
            // one that is not an item is reported, not fatal.
            while let Some(element) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
                self.1.store(0, Ordering::Relaxed);
                number += 1;
                let entry = match serde_json::from_str::<WranglerItem>(element.get()) {
                    Ok(item) => wrangler_entry(item),
                    Err(e) => Err((
                        format!("(element {number})"),
                        format!("element {number} is not a bulk item: {e}"),
                    )),
                };
                if self.0.blocking_send(Ok(entry)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for Elements<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    /// The file, read no further than [`MAX_LINE_BYTES`] past the last element's end: one
    /// element is held whole while it is parsed.
    struct Capped<'a> {
        file: std::io::BufReader<std::fs::File>,
        since_element: &'a AtomicU64,
    }

    impl std::io::Read for Capped<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let read = self.file.read(buf)?;
            let since = self.since_element.fetch_add(read as u64, Ordering::Relaxed);
            if since.saturating_add(read as u64) > MAX_LINE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("an element is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            Ok(read)
        }
    }

    let since_element = AtomicU64::new(0);
    let reader = Capped {
        file: std::io::BufReader::new(file),
        since_element: &since_element,
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    if let Err(e) = Elements(&sender, &since_element).deserialize(&mut deserializer) {
        let _ = sender.blocking_send(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
    }
}
