//! Whole-store jobs over [`KvStore`]: [`copy`] every key under a prefix from one store to
//! another (either provider, or a [`MemoryStore`](crate::kv::MemoryStore)), [`sync`] one to the
//! other (a copy, then the deletion of what the source lacks), [`verify`] that two stores
//! hold the same, [`export`] a store to a file or [`import`] one (Cloudflare's bulk JSON,
//! Fastly's batch lines, a directory), and [`delete_prefix`] as a resumable job. Feature
//! `transfer`.
//!
//! A job reads the source a listing page at a time (a *chunk*, at most 1,000 keys), reads the
//! chunk's values in the source's bulk reads, and writes them in the destination's bulk writes,
//! [`JobOptions::concurrency`] chunks at a time: memory stays about a chunk's values times the
//! concurrency, whatever the store's size. Values are byte-exact. Metadata crosses in the
//! destination's kind (Cloudflare's JSON as its text for Fastly; Fastly's text for Cloudflare
//! only when it is JSON), expiry as an absolute time; a key the destination cannot hold as it
//! is (too long, metadata it cannot keep) is reported failed with the reason, never altered,
//! and a key that expires before the destination's minimum time to live is skipped.
//!
//! With a [journal](JobOptions::journal) a job is resumable: each chunk is recorded once the
//! destination has acknowledged it, so a job killed at any point and run again with the same
//! journal goes on from its first unfinished chunk, skipping the later chunks it had finished
//! if the listing gives the very same pages again (same first and last key, same count; a page
//! that moved is done again), and its report counts both runs. The journal names the job and
//! both stores ([`KvStore::id`]): it is refused for another job or pair. A journal whose job
//! finished makes a run again do nothing; remove it to start over. It is the crate's
//! append-only log (the emulator's `--persist` format), synced after each chunk.
//!
//! A key the destination refuses ([`Failure::Refused`](crate::Failure::Refused): its answer
//! names it, or says its request is wrong) is reported, and the job goes on. A request that
//! fails as a whole ([`Failure::RequestFailed`](crate::Failure::RequestFailed): an outage, a
//! credential, retries spent) ends the job with that error, its chunk not journaled, so a run
//! again redoes it: a key is never reported failed for an outage a run again would get past.
//!
//! Fastly's reads give no expiry: a copy from Fastly writes entries that do not expire.
//!
//! ```
//! # async fn demo() -> Result<(), edgekv::Error> {
//! use edgekv::kv::{BulkItem, Capabilities, KvStore, MemoryStore};
//! use edgekv::transfer::{JobOptions, copy, verify};
//!
//! let source = MemoryStore::new(Capabilities::fastly());
//! let items = (0..10).map(|i| Ok(BulkItem::new(format!("user/{i}"), vec![i as u8; 3])));
//! source.bulk_put(Box::pin(futures_util::stream::iter(items)), 1).await?;
//! let target = MemoryStore::new(Capabilities::cloudflare());
//!
//! let report = copy(&source, &target, &JobOptions::new().prefix("user/")).await?;
//! assert_eq!((report.copied, report.failed.len()), (10, 0));
//! assert!(verify(&source, &target, &JobOptions::new()).await?.is_equal());
//! # Ok(())
//! # }
//! ```

mod carry;
mod delete;
mod files;
mod journal;

pub use delete::{DeleteReport, delete_prefix};
pub use files::{Format, export, import};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::bulk::FailedKey;
use crate::error::{Error, InvalidInput};
use crate::kv::{KvStore, Listed, Metadata, Record, unix_now};
use crate::transport::observed::{Tally, counting, counting_stream};
use journal::{ChunkDone, Journal};

/// How a job runs. `Default` is [`JobOptions::new`].
#[derive(Clone)]
#[non_exhaustive]
pub struct JobOptions {
    /// Only keys starting with this (all keys for `""`).
    pub prefix: String,
    /// Chunks in flight at once (default 4; at least 1).
    pub concurrency: usize,
    /// Where the job records its progress, to resume after a kill; `None`: not resumable.
    pub journal: Option<PathBuf>,
    /// Called after each chunk with the job's progress so far.
    pub progress: Option<Arc<ProgressFn>>,
    /// Change nothing, report what would be done: [`sync`] what it would copy and delete,
    /// [`delete_prefix`] the keys it would delete, [`copy`] and [`export`] the keys they would
    /// copy (listed), [`import`] the file's entries, each checked against the destination's
    /// rules (the ones it could not write are in `failed`). No journal is written.
    pub dry_run: bool,
    /// [`sync`] only: the most of the destination's keys (under the prefix) it may delete, in
    /// percent (default 10); over it the sync stops before deleting anything.
    pub max_delete_percent: u32,
    /// How many keys the caller expects the source to hold under the prefix, for the
    /// [`estimate`] a copy checks against [`max_duration`](Self::max_duration).
    pub expected_keys: Option<u64>,
    /// The longest a job may take within the providers' request budgets: one whose estimate
    /// is longer stops before writing (`InvalidInput::JobTooLong`): a copy or [`sync`] by
    /// [`estimate`], an [`import`] by its writes, a [`delete_prefix`] by its deletes (Fastly's
    /// are a request a key). The estimate is of [`expected_keys`](Self::expected_keys), or
    /// without it of the keys a first pass counts (a listing, a page per 1,000 keys on the
    /// source's budget, or a reading of the file). A resumed job is not checked again.
    pub max_duration: Option<Duration>,
}

/// What [`JobOptions::progress`] calls.
pub type ProgressFn = dyn Fn(&Progress) + Send + Sync;

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions::new()
    }
}

impl std::fmt::Debug for JobOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobOptions")
            .field("prefix", &self.prefix)
            .field("concurrency", &self.concurrency)
            .field("journal", &self.journal)
            .field("progress", &self.progress.is_some())
            .field("dry_run", &self.dry_run)
            .field("max_delete_percent", &self.max_delete_percent)
            .field("expected_keys", &self.expected_keys)
            .field("max_duration", &self.max_duration)
            .finish()
    }
}

impl JobOptions {
    /// Every key, 4 chunks at a time, no journal.
    pub fn new() -> Self {
        JobOptions {
            prefix: String::new(),
            concurrency: 4,
            journal: None,
            progress: None,
            dry_run: false,
            max_delete_percent: 10,
            expected_keys: None,
            max_duration: None,
        }
    }

    /// [`sync`] changes nothing and reports what it would do.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The caller expects `keys` keys under the prefix (for the estimate).
    pub fn expected_keys(mut self, keys: u64) -> Self {
        self.expected_keys = Some(keys);
        self
    }

    /// A copy whose estimate is longer than `max` stops before writing.
    pub fn max_duration(mut self, max: Duration) -> Self {
        self.max_duration = Some(max);
        self
    }

    /// [`sync`] may delete up to `percent` of the destination's keys (100: any number).
    pub fn max_delete_percent(mut self, percent: u32) -> Self {
        self.max_delete_percent = percent;
        self
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// `concurrency` chunks in flight at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Records progress in the journal at `path` (created if missing; resumed if it holds this
    /// job's progress).
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Calls `progress` after each chunk.
    pub fn progress(mut self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

/// A job's progress, as [`JobOptions::progress`] sees it after each chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Chunks done, in this run and runs before it (from the journal).
    pub chunks: u64,
    /// Keys listed.
    pub listed: u64,
    /// Keys written to the destination (by [`delete_prefix`]: deleted).
    pub copied: u64,
    /// Keys skipped (gone from the source since listed, or expiring).
    pub skipped: u64,
    /// Keys not written.
    pub failed: u64,
    /// Value bytes written.
    pub bytes: u64,
    /// Time spent in this run.
    pub elapsed: Duration,
    /// Keys listed in this run (the rate's numerator: runs before it are not in `elapsed`).
    pub listed_this_run: u64,
    /// Time this run's requests waited for a budget: the client's own limit
    /// ([`RequestPolicy::client_limit`](crate::policy::RequestPolicy::client_limit)) or the
    /// wait a provider's 429 asked for. Concurrent requests' waits add up, so it can pass `elapsed`;
    /// growing fast, it says the job is bound by a budget, not by the client.
    pub budget_wait: Duration,
}

impl Progress {
    /// Keys listed per second in this run.
    pub fn keys_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.listed_this_run as f64 / seconds
        } else {
            0.0
        }
    }

    /// The time left at this run's rate to list `expected` keys in all
    /// ([`JobOptions::expected_keys`]); `None` before any rate is known.
    pub fn eta(&self, expected: u64) -> Option<Duration> {
        let rate = self.keys_per_second();
        if rate <= 0.0 {
            return None;
        }
        let left = expected.saturating_sub(self.listed) as f64;
        Duration::try_from_secs_f64(left / rate).ok()
    }
}

/// What a [`copy`] did, over every run of the job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Keys listed in the source.
    pub listed: u64,
    /// Keys written to the destination (the destination acknowledged each).
    pub copied: u64,
    /// Keys not written because there was nothing to write: gone from the source since they
    /// were listed, or expiring before the destination's minimum time to live.
    pub skipped: u64,
    /// Keys not written, each with the reason (`index` is the key's place in its listing
    /// page).
    pub failed: Vec<FailedKey>,
    /// Value bytes written.
    pub bytes: u64,
    /// Requests this run sent to the source (listing pages and reads, retries included).
    pub source_requests: u64,
    /// Requests this run sent to the destination (writes, retries included).
    pub destination_requests: u64,
    /// Chunks this run skipped because an earlier run had finished them (journal). A run on
    /// the journal of a job that had finished does nothing: every chunk is counted here.
    pub resumed_chunks: u64,
    /// Time this run's requests waited for a budget, both sides ([`Progress::budget_wait`]).
    pub budget_wait: Duration,
}

/// Copies every key under [`JobOptions::prefix`] from `source` to `destination`, with its value,
/// metadata and expiry where the destination can hold them. Returns when every chunk is done;
/// each key listed is then copied, skipped or failed with its reason. A listing or read error,
/// or a journal that cannot be written, ends the job with that error (resumable with the
/// journal).
pub async fn copy(
    source: &dyn KvStore,
    destination: &dyn KvStore,
    options: &JobOptions,
) -> Result<CopyReport, Error> {
    copy_as("copy", source, destination, options).await
}

/// What a [`sync`] did, or with [`JobOptions::dry_run`] would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The copy of every source key (empty on a dry run).
    pub copy: CopyReport,
    /// Keys of the source the copy writes (on a dry run: would write).
    pub to_copy: u64,
    /// Keys the destination holds that the source does not: deleted, or on a dry run to
    /// delete.
    pub to_delete: u64,
    /// Those keys, at most [`MAX_DIFFERENCES`] of them.
    pub to_delete_keys: Vec<String>,
    /// Keys deleted.
    pub deleted: u64,
    /// Keys not deleted, each with the reason.
    pub failed_deletes: Vec<FailedKey>,
    /// Requests this run sent to the source: the copy's, and the reads that find the
    /// destination's extra keys (retries included).
    pub source_requests: u64,
    /// Requests this run sent to the destination: the copy's, the listings of its keys, and
    /// the deletes.
    pub destination_requests: u64,
    /// Time this run's requests waited for a budget, both sides ([`Progress::budget_wait`]).
    pub budget_wait: Duration,
}

/// Makes the destination hold what the source holds under [`JobOptions::prefix`]: copies every
/// source key (as [`copy`], resumable with the journal), then deletes the destination's keys the
/// source lacks. It first counts those: if they are more than
/// [`JobOptions::max_delete_percent`] of the destination's keys, it stops before changing
/// anything (`InvalidInput::TooManyDeletes`). With [`JobOptions::dry_run`] it changes nothing
/// and reports what it would copy and delete. Memory stays a chunk's worth: the deletion pass
/// reads the destination's listing a page at a time and asks the source for those keys.
pub async fn sync(
    source: &dyn KvStore,
    destination: &dyn KvStore,
    options: &JobOptions,
) -> Result<SyncReport, Error> {
    let mut report = SyncReport::default();
    let counters = Counters::default();
    let held = extras(
        source,
        destination,
        options,
        &counters,
        async |extra: Vec<String>| {
            report.to_delete += extra.len() as u64;
            let room = MAX_DIFFERENCES.saturating_sub(report.to_delete_keys.len());
            report.to_delete_keys.extend(extra.into_iter().take(room));
            Ok(())
        },
    )
    .await?;
    if options.dry_run {
        // The plan, even over the guard: that is when it is wanted.
        let counting = counting(&counters.source, count_keys(source, &options.prefix));
        report.to_copy = counting.await?;
        counters.add_to(&mut report);
        return Ok(report);
    }
    // The most it may delete, in keys; the deletion pass holds to it too, should the source
    // answer differently by then.
    let allowed = match options.max_delete_percent {
        100.. => u64::MAX,
        percent => held.saturating_mul(u64::from(percent)) / 100,
    };
    let too_many = |deletes: u64| InvalidInput::TooManyDeletes {
        deletes,
        of: held,
        max_percent: options.max_delete_percent,
    };
    if report.to_delete > allowed {
        return Err(too_many(report.to_delete).into());
    }
    if let Some(max) = options.max_duration.filter(|_| !resuming(options)) {
        // The copy's estimate, and on the destination's side the deletes after it.
        let keys = match options.expected_keys {
            Some(keys) => keys,
            None => counting(&counters.source, count_keys(source, &options.prefix)).await?,
        };
        let (from, to) = (source.capabilities(), destination.capabilities());
        let copying = estimate(keys, from, to);
        let per_request = to.bulk_delete_max.clamp(1, 1000) as u64;
        let deletes = report.to_delete.div_ceil(per_request);
        let deleting = at_budget(deletes, to.budget);
        let destination_side = copying.destination.duration.saturating_add(deleting);
        match copying.source.duration >= destination_side {
            true => within(max, "source", copying.source.duration)?,
            false => within(max, "destination", destination_side)?,
        }
    }
    report.copy = copy_as("sync", source, destination, options).await?;
    report.to_copy = report.copy.listed;
    // What is extra now is deleted, a page at a time (a key the source gained since was
    // copied, and is not extra any more).
    let concurrency = options.concurrency.max(1);
    let (mut deleted, mut failed) = (0, Vec::new());
    extras(
        source,
        destination,
        options,
        &counters,
        async |extra: Vec<String>| {
            if deleted + (extra.len() as u64) > allowed {
                return Err(too_many(deleted + extra.len() as u64).into());
            }
            let keys = futures_util::stream::iter(extra.into_iter().map(Ok)).boxed();
            let delete = destination.bulk_delete(keys, concurrency);
            let done = counting(&counters.destination, delete).await?;
            stop_on_failed_requests(destination, &done.failed)?;
            deleted += done.deleted;
            failed.extend(done.failed);
            Ok(())
        },
    )
    .await?;
    report.deleted = deleted;
    report.failed_deletes = failed;
    counters.add_to(&mut report);
    Ok(report)
}

/// Walks the destination's keys under the prefix a page at a time, handing `each` the page's
/// keys the source lacks (never more than a page is held): how many keys the destination holds.
async fn extras(
    source: &dyn KvStore,
    destination: &dyn KvStore,
    options: &JobOptions,
    counters: &Counters,
    mut each: impl AsyncFnMut(Vec<String>) -> Result<(), Error>,
) -> Result<u64, Error> {
    let mut held = 0u64;
    let pages = destination.list(&options.prefix, None);
    let mut pages = counting_stream(counters.destination.clone(), pages);
    while let Some(page) = pages.try_next().await? {
        held += page.keys.len() as u64;
        let (holdable, mut extra): (Vec<String>, Vec<String>) = page
            .keys
            .into_iter()
            .map(|k| k.key)
            .partition(|key| source.capabilities().check_key(key).is_ok());
        for (key, record) in counting(&counters.source, read_all(source, holdable)).await? {
            if record.is_none() {
                extra.push(key);
            }
        }
        if !extra.is_empty() {
            each(extra).await?;
        }
    }
    Ok(held)
}

/// What a copy of some keys costs each side, within its provider's budget: see [`estimate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Estimate {
    /// The source's side.
    pub source: SideEstimate,
    /// The destination's side.
    pub destination: SideEstimate,
}

impl Estimate {
    /// The side that bounds the job, and how long it takes.
    pub fn slowest(&self) -> (&'static str, Duration) {
        if self.source.duration >= self.destination.duration {
            ("source", self.source.duration)
        } else {
            ("destination", self.destination.duration)
        }
    }
}

/// One side of an [`Estimate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SideEstimate {
    /// Requests the side serves (listing pages, reads or writes).
    pub requests: u64,
    /// Those its provider counts toward its budget.
    pub counted: u64,
    /// How long the counted requests take at the budget's rate.
    pub duration: Duration,
}

/// What a [`copy`] of `keys` keys costs each side at least: the source serves a listing page
/// per 1,000 keys and its bulk reads (single reads where it has none); the destination a bulk
/// write per chunk. Each side's time is the requests its provider counts
/// ([`Capabilities::budget`](crate::kv::Capabilities::budget)) at its budget's rate; retries and
/// Cloudflare's re-reads of values that are not text come on top.
///
/// ```
/// use edgekv::kv::Capabilities;
///
/// // 100,000 keys from Cloudflare to Fastly: 100 pages and 1,000 bulk reads on Cloudflare's
/// // 1,200 requests per 5 minutes; 100 batch writes on Fastly's 1,000 writes an hour.
/// let estimate = edgekv::transfer::estimate(100_000, &Capabilities::cloudflare(), &Capabilities::fastly());
/// assert_eq!((estimate.source.counted, estimate.destination.counted), (1_100, 100));
/// assert_eq!(estimate.slowest().0, "destination"); // 360 s against 275 s
/// ```
pub fn estimate(
    keys: u64,
    source: &crate::kv::Capabilities,
    destination: &crate::kv::Capabilities,
) -> Estimate {
    const PAGE: u64 = 1000;
    let pages = keys.div_ceil(PAGE);
    let reads = match source.bulk_get_max {
        0 => keys,
        size => keys.div_ceil(size as u64),
    };
    let side = |listing_and_reads: u64, writes: u64, budget: crate::policy::ClientLimit| {
        let counted = if budget.counts_reads {
            listing_and_reads + writes
        } else {
            writes
        };
        SideEstimate {
            requests: listing_and_reads + writes,
            counted,
            duration: at_budget(counted, budget),
        }
    };
    Estimate {
        source: side(pages + reads, 0, source.budget),
        destination: side(0, pages, destination.budget),
    }
}

/// [`copy`] journaled as a job of `kind`.
async fn copy_as(
    kind: &str,
    source: &dyn KvStore,
    destination: &dyn KvStore,
    options: &JobOptions,
) -> Result<CopyReport, Error> {
    let concurrency = crate::bulk::concurrency(options.concurrency)?.get();
    let job = journal::JobId::new(kind, &options.prefix, source.id(), destination.id());
    if options.dry_run {
        let report = CopyReport {
            listed: count_keys(source, &options.prefix).await?,
            ..CopyReport::default()
        };
        return Ok(report);
    }
    if let Some(max) = options.max_duration.filter(|_| !resuming(options)) {
        let keys = match options.expected_keys {
            Some(keys) => keys,
            None => count_keys(source, &options.prefix).await?,
        };
        let (slowest, takes) =
            estimate(keys, source.capabilities(), destination.capabilities()).slowest();
        within(max, slowest, takes)?;
    }
    let Begun {
        journal,
        resume,
        mut report,
    } = begin(options, job).await?;
    let tracker = Tracker::new(&report, resume.before.len() as u64);
    if ended_before(&journal, &resume).await? {
        return Ok(report);
    }

    let counters = Counters::default();
    let pages = source.list(&options.prefix, resume.cursor.clone());
    let pages = counting_stream(counters.source.clone(), pages);
    let first_seq = resume.watermark;
    // After an error no chunk is started; those in flight finish.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let chunks = pages
        .take_while(|_| std::future::ready(!stopped.load(std::sync::atomic::Ordering::Relaxed)))
        // Each page with the cursor it was asked at.
        .scan(resume.cursor.clone(), |from, page| {
            let asked_at = from.clone();
            if let Ok(page) = &page {
                from.clone_from(&page.cursor);
            }
            std::future::ready(Some((asked_at, page)))
        })
        .enumerate()
        .map(|(n, (from, page))| (first_seq + n as u64, from, page));
    let resumed = Mutex::new(0u64);
    let first_error = {
        let outcomes = chunks
            .map(|(seq, from, page)| {
                let journal = journal.clone();
                let earlier = resume.later.get(&seq);
                let (resumed, tracker, counters) = (&resumed, &tracker, &counters);
                async move {
                    let page = page?;
                    let first = page.keys.first().map(|k| k.key.clone());
                    let last = page.keys.last().map(|k| k.key.clone());
                    // Done by a run before, on this very page: counted, not redone. A page the
                    // listing gives differently now (keys added or gone) is done again.
                    if let Some(earlier) = earlier
                        && earlier.from == from
                        && earlier.first == first
                        && earlier.last == last
                        && earlier.listed == page.keys.len() as u64
                        && earlier.next == page.cursor
                    {
                        *resumed.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        return Ok(Some(earlier.clone()));
                    }
                    let next = page.cursor.clone();
                    let mut done = copy_chunk(source, destination, page.keys, counters).await?;
                    done.seq = seq;
                    done.from = from;
                    done.next = next;
                    done.first = first;
                    done.last = last;
                    if let Some(journal) = journal {
                        record_chunk(journal, done.clone()).await?;
                    }
                    tracker.chunk_done(options, &done, counters);
                    Ok::<_, Error>(Some(done))
                }
            })
            .buffer_unordered(concurrency);
        let mut outcomes = std::pin::pin!(outcomes);
        let mut first_error = None;
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(Some(done)) => add(&mut report, &done),
                Ok(None) => {}
                // The chunks in flight still finish (and are journaled): none is abandoned mid-write.
                Err(error) => {
                    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error
    };
    report.resumed_chunks += *resumed.lock().unwrap_or_else(|e| e.into_inner());
    counters.report(&mut report);
    if let Some(error) = first_error {
        return Err(error);
    }
    if let Some(journal) = journal {
        finish_journal(journal).await?;
    }
    Ok(report)
}

/// Whether the job's journal is there already: a run again.
fn resuming(options: &JobOptions) -> bool {
    options.journal.as_ref().is_some_and(|path| path.exists())
}

/// Refuses a job estimated to take `takes`, bound by its `slowest` side, over `max`.
fn within(max: Duration, slowest: &'static str, takes: Duration) -> Result<(), Error> {
    if takes <= max {
        return Ok(());
    }
    Err(InvalidInput::JobTooLong {
        estimate_secs: takes.as_secs(),
        max_secs: max.as_secs(),
        slowest,
    }
    .into())
}

/// How long `counted` requests take at `budget`'s rate.
fn at_budget(counted: u64, budget: crate::policy::ClientLimit) -> Duration {
    let per_request = budget.per.as_secs_f64() / f64::from(budget.requests.max(1));
    Duration::try_from_secs_f64(counted as f64 * per_request).unwrap_or(Duration::MAX)
}

/// The keys under `prefix` in `store`, counted from its listing.
async fn count_keys(store: &dyn KvStore, prefix: &str) -> Result<u64, Error> {
    let mut pages = store.list(prefix, None);
    let mut keys = 0u64;
    while let Some(page) = pages.try_next().await? {
        keys = keys.saturating_add(page.keys.len() as u64);
    }
    Ok(keys)
}

/// A job begun: its journal (none without one, or on a dry run), where it resumes, and the
/// report of the runs before it.
struct Begun {
    journal: Option<Arc<Mutex<Journal>>>,
    resume: journal::Resume,
    report: CopyReport,
}

/// Opens `job`'s journal and reads where it resumes.
async fn begin(options: &JobOptions, job: journal::JobId) -> Result<Begun, Error> {
    let mut journal = match options.dry_run {
        true => None,
        false => open_journal(options, job).await?,
    };
    let resume = journal.as_mut().map(Journal::resume).unwrap_or_default();
    let mut report = CopyReport::default();
    for done in &resume.before {
        add(&mut report, done);
    }
    report.resumed_chunks = resume.before.len() as u64;
    Ok(Begun {
        journal: journal.map(|j| Arc::new(Mutex::new(j))),
        resume,
        report,
    })
}

/// Whether a run before did the whole job; one killed after its last chunk but before it
/// recorded the end has its end recorded now.
async fn ended_before(
    journal: &Option<Arc<Mutex<Journal>>>,
    resume: &journal::Resume,
) -> Result<bool, Error> {
    if resume.finished {
        return Ok(true);
    }
    if !resume.listing_over() {
        return Ok(false);
    }
    if let Some(journal) = journal {
        finish_journal(journal.clone()).await?;
    }
    Ok(true)
}

/// Records the job finished.
async fn finish_journal(journal: Arc<Mutex<Journal>>) -> Result<(), Error> {
    let finish = move || journal.lock().unwrap_or_else(|e| e.into_inner()).finished();
    let finished = tokio::task::spawn_blocking(finish).await;
    finished.map_err(Error::from_caller)?.map_err(journal_error)
}

/// The job's journal, if it has one: opened (created, or checked to be this job's).
async fn open_journal(options: &JobOptions, job: journal::JobId) -> Result<Option<Journal>, Error> {
    let Some(path) = options.journal.clone() else {
        return Ok(None);
    };
    let opened = tokio::task::spawn_blocking(move || Journal::open(&path, &job));
    let journal = opened.await.map_err(Error::from_caller)?;
    Ok(Some(journal.map_err(journal_error)?))
}

/// Records a chunk done, on disk before it returns.
async fn record_chunk(journal: Arc<Mutex<Journal>>, done: ChunkDone) -> Result<(), Error> {
    let append = move || {
        journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .chunk_done(done)
    };
    let appended = tokio::task::spawn_blocking(append).await;
    appended.map_err(Error::from_caller)?.map_err(journal_error)
}

fn add(report: &mut CopyReport, done: &ChunkDone) {
    report.listed += done.listed;
    report.copied += done.copied;
    report.skipped += done.skipped;
    report.bytes += done.bytes;
    report
        .failed
        .extend(done.failed.iter().map(FailedKey::from));
}

fn journal_error(error: std::io::Error) -> Error {
    Error::from_caller(JournalError(error))
}

/// The job's journal could not be read or written.
#[derive(Debug)]
struct JournalError(std::io::Error);

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the job's journal: {}", self.0)
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The requests a job sent to each side and its waits for their budgets, counted where they
/// are sent (the transport's attempt loop) for the calls made for that side.
#[derive(Default)]
struct Counters {
    source: Arc<Tally>,
    destination: Arc<Tally>,
}

impl Counters {
    /// Adds this run's requests and waits to `report`.
    fn report(&self, report: &mut CopyReport) {
        report.source_requests = self.source.requests();
        report.destination_requests = self.destination.requests();
        report.budget_wait = self.budget_wait();
    }

    fn budget_wait(&self) -> Duration {
        self.source.budget_wait() + self.destination.budget_wait()
    }

    /// Adds these counts to a sync's, which already holds its copy's.
    fn add_to(&self, report: &mut SyncReport) {
        report.source_requests = report.copy.source_requests + self.source.requests();
        report.destination_requests =
            report.copy.destination_requests + self.destination.requests();
        report.budget_wait = report.copy.budget_wait + self.budget_wait();
    }
}

/// A job's progress, handed to [`JobOptions::progress`] after each chunk.
struct Tracker {
    progress: Mutex<Progress>,
    started: Instant,
}

impl Tracker {
    /// Progress from what the runs before did (`report`, `chunks` of them).
    fn new(report: &CopyReport, chunks: u64) -> Tracker {
        Tracker::starting(Progress {
            chunks,
            listed: report.listed,
            copied: report.copied,
            skipped: report.skipped,
            failed: report.failed.len() as u64,
            bytes: report.bytes,
            ..Progress::default()
        })
    }

    /// Progress from `before`, what the runs before did.
    fn starting(before: Progress) -> Tracker {
        Tracker {
            progress: Mutex::new(before),
            started: Instant::now(),
        }
    }

    /// Adds a chunk done in this run, and tells the caller.
    fn chunk_done(&self, options: &JobOptions, done: &ChunkDone, counters: &Counters) {
        let Some(callback) = &options.progress else {
            return;
        };
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.chunks += 1;
        progress.listed += done.listed;
        progress.copied += done.copied;
        progress.skipped += done.skipped;
        progress.failed += done.failed.len() as u64;
        progress.bytes += done.bytes;
        progress.listed_this_run += done.listed;
        progress.elapsed = self.started.elapsed();
        progress.budget_wait = counters.budget_wait();
        callback(&progress);
    }
}

/// Reads one chunk's values from `source` and writes them to `destination`.
async fn copy_chunk(
    source: &dyn KvStore,
    destination: &dyn KvStore,
    keys: Vec<Listed>,
    counters: &Counters,
) -> Result<ChunkDone, Error> {
    let mut done = ChunkDone {
        listed: keys.len() as u64,
        ..ChunkDone::default()
    };
    let names: Vec<String> = keys.into_iter().map(|k| k.key).collect();
    let now = unix_now();
    let capabilities = destination.capabilities();
    // Read a slice at a time (a bulk read's worth); written in one bulk write per chunk, or
    // sooner once the values held reach `WRITE_BYTES`: few write requests (what the budgets
    // count), and memory bounded whatever the values' sizes.
    let mut pending = Pending::default();
    for (slice, part) in names.chunks(SLICE).enumerate() {
        let read = read_all(source, part.to_vec());
        let records = counting(&counters.source, read).await?;
        for (position, (key, record)) in records.into_iter().enumerate() {
            let position = (slice * SLICE + position) as u64;
            let Some(record) = record else {
                done.skipped += 1;
                continue;
            };
            match carry::item_for(&key, record, capabilities, now) {
                Ok(item) => pending.push(position, item),
                Err(carry::NotCarried::Expiring) => done.skipped += 1,
                Err(carry::NotCarried::Refused(reason)) => done.failed.push(
                    FailedKey {
                        key,
                        index: position,
                        reason: crate::bulk::clip(reason),
                        failure: crate::bulk::Failure::Refused,
                    }
                    .into(),
                ),
            }
        }
        if pending.bytes >= WRITE_BYTES {
            let pending = std::mem::take(&mut pending);
            write_pending(destination, pending, &mut done, counters).await?;
        }
    }
    write_pending(destination, pending, &mut done, counters).await?;
    Ok(done)
}

/// Keys read at once within a chunk.
const SLICE: usize = 100;
/// Value bytes a chunk holds before it writes them.
const WRITE_BYTES: u64 = 64 << 20;

/// What a chunk has read and not yet written: the items, each key's place in its page (or in
/// the imported file).
#[derive(Default)]
struct Pending {
    items: Vec<crate::kv::BulkItem>,
    positions: Vec<u64>,
    bytes: u64,
}

impl Pending {
    fn push(&mut self, position: u64, item: crate::kv::BulkItem) {
        self.bytes += item.value.len() as u64;
        self.items.push(item);
        self.positions.push(position);
    }
}

/// Writes `pending` in one bulk write, adding to `done`.
async fn write_pending(
    destination: &dyn KvStore,
    pending: Pending,
    done: &mut ChunkDone,
    counters: &Counters,
) -> Result<(), Error> {
    let Pending {
        items, positions, ..
    } = pending;
    let mut parts = vec![(items, positions)];
    while let Some((items, positions)) = parts.pop() {
        if items.is_empty() {
            continue;
        }
        let sizes: Vec<u64> = items.iter().map(|i| i.value.len() as u64).collect();
        // Values are `Bytes`: a copy kept to send a half again costs no value bytes.
        let stream = futures_util::stream::iter(items.iter().cloned().map(Ok)).boxed();
        let write = destination.bulk_put(stream, 1);
        let written = counting(&counters.destination, write).await?;
        stop_on_failed_requests(destination, &written.failed)?;
        if written.written == 0 && items.len() > 1 && written.failed.len() == items.len() {
            // Refused whole: one bad entry fails Cloudflare's bulk write, and a batch Fastly
            // answers 4xx is not known to have written any line. Each half is sent again, down
            // to single entries, so only the entries refused on their own are reported.
            let (mut items, mut positions) = (items, positions);
            let half = items.len() / 2;
            let (later, later_positions) = (items.split_off(half), positions.split_off(half));
            parts.push((later, later_positions));
            parts.push((items, positions));
            continue;
        }
        let failed: std::collections::HashSet<u64> =
            written.failed.iter().map(|f| f.index).collect();
        done.copied += written.written;
        done.bytes += (0..sizes.len() as u64)
            .filter(|i| !failed.contains(i))
            .map(|i| sizes[i as usize])
            .sum::<u64>();
        for mut refused in written.failed {
            // The write's index is among the items sent; the report's, the key's in its page.
            let sent = usize::try_from(refused.index).unwrap_or(usize::MAX);
            refused.index = positions.get(sent).copied().unwrap_or(refused.index);
            refused.reason = crate::bulk::clip(refused.reason);
            done.failed.push(refused.into());
        }
    }
    Ok(())
}

/// Ends a job whose chunk had a request fail as a whole (an outage, a credential, retries
/// spent): its keys are not known to be written, so the chunk is not journaled and a run again
/// redoes it. Keys the destination refused are reported, and the job goes on.
fn stop_on_failed_requests(store: &dyn KvStore, failed: &[FailedKey]) -> Result<(), Error> {
    let lost = failed
        .iter()
        .filter(|f| f.failure == crate::bulk::Failure::RequestFailed);
    match lost.clone().next() {
        None => Ok(()),
        Some(first) => Err(Error::transport(
            store.capabilities().provider,
            "a request of the chunk failed; the job stops there and a run again redoes the chunk",
            std::io::Error::other(format!(
                "{} keys not known to be done, the first {:?}: {}",
                lost.count(),
                first.key,
                crate::bulk::clip(first.reason.clone())
            )),
        )),
    }
}

/// The records of `keys` in `store`, in the store's bulk reads of at most its bulk size.
async fn read_all(
    store: &dyn KvStore,
    keys: Vec<String>,
) -> Result<Vec<(String, Option<Record>)>, Error> {
    let size = store.capabilities().bulk_get_max.max(100);
    let mut records = Vec::with_capacity(keys.len());
    for part in keys.chunks(size) {
        records.extend(store.bulk_get(part.to_vec()).await?);
    }
    Ok(records)
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Keys compared (listed in the source).
    pub compared: u64,
    /// The differences found, at most [`MAX_DIFFERENCES`] of them.
    pub differences: Vec<Difference>,
    /// How many differences there were in all.
    pub different: u64,
}

impl VerifyReport {
    /// Whether the two stores hold the same keys, values and (where both keep them) metadata
    /// and expiry.
    pub fn is_equal(&self) -> bool {
        self.different == 0
    }
}

/// The most differences a [`VerifyReport`] lists (it counts them all).
pub const MAX_DIFFERENCES: usize = 10_000;

/// One key that differs between the two stores.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Difference {
    /// The key.
    pub key: String,
    /// How it differs.
    pub kind: DifferenceKind,
}

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DifferenceKind {
    /// The source has it, the destination does not.
    OnlyInSource,
    /// The destination has it, the source does not.
    OnlyInDestination,
    /// The values differ.
    Value,
    /// The metadata differs (compared in the destination's kind).
    Metadata,
    /// Both stores say when it expires, and they disagree by more than 2 s.
    Expiry,
}

/// Compares every key under [`JobOptions::prefix`]: the source's keys against the
/// destination's values, metadata and expiry, then the destination's keys against the source's
/// key set. Reads both stores whole, a chunk at a time.
pub async fn verify(
    source: &dyn KvStore,
    destination: &dyn KvStore,
    options: &JobOptions,
) -> Result<VerifyReport, Error> {
    let mut report = VerifyReport::default();
    let found = |key: String, kind: DifferenceKind, report: &mut VerifyReport| {
        report.different += 1;
        if report.differences.len() < MAX_DIFFERENCES {
            report.differences.push(Difference { key, kind });
        }
    };
    let to = destination.capabilities().metadata;
    let mut pages = source.list(&options.prefix, None);
    while let Some(page) = pages.try_next().await? {
        let keys: Vec<String> = page.keys.into_iter().map(|k| k.key).collect();
        report.compared += keys.len() as u64;
        // A key the destination cannot hold is not asked for: it cannot be there.
        let holdable: Vec<String> = keys
            .iter()
            .filter(|key| destination.capabilities().check_key(key).is_ok())
            .cloned()
            .collect();
        let theirs: BTreeMap<String, Option<Record>> =
            read_all(destination, holdable).await?.into_iter().collect();
        let ours = read_all(source, keys).await?;
        for (key, mine) in ours {
            let Some(mine) = mine else { continue };
            let Some(Some(other)) = theirs.get(&key) else {
                found(key, DifferenceKind::OnlyInSource, &mut report);
                continue;
            };
            if mine.value != other.value {
                found(key, DifferenceKind::Value, &mut report);
            } else if !same_metadata(mine.metadata.clone(), other.metadata.clone(), to) {
                found(key, DifferenceKind::Metadata, &mut report);
            } else if let (Some(a), Some(b)) = (mine.expires_at, other.expires_at)
                && a.abs_diff(b) > 2
            {
                found(key, DifferenceKind::Expiry, &mut report);
            }
        }
    }
    let mut pages = destination.list(&options.prefix, None);
    while let Some(page) = pages.try_next().await? {
        let (holdable, not): (Vec<String>, Vec<String>) = page
            .keys
            .into_iter()
            .map(|k| k.key)
            .partition(|key| source.capabilities().check_key(key).is_ok());
        for key in not {
            found(key, DifferenceKind::OnlyInDestination, &mut report);
        }
        for (key, record) in read_all(source, holdable).await? {
            if record.is_none() {
                found(key, DifferenceKind::OnlyInDestination, &mut report);
            }
        }
    }
    Ok(report)
}

/// Whether two metadata are the same once the source's is in the destination's kind.
fn same_metadata(
    source: Option<Metadata>,
    destination: Option<Metadata>,
    to: crate::kv::MetadataKind,
) -> bool {
    let source = source.map(|m| carry::metadata_for(m, to));
    match (source, destination) {
        (None, None) => true,
        (Some(Ok(a)), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_gives_this_runs_rate_and_the_time_left() {
        let progress = Progress {
            listed: 1_500, // 1,000 of them from a run before
            listed_this_run: 500,
            elapsed: Duration::from_secs(10),
            ..Progress::default()
        };
        assert_eq!(progress.keys_per_second(), 50.0);
        assert_eq!(progress.eta(2_000), Some(Duration::from_secs(10)));
        assert_eq!(
            progress.eta(1_000),
            Some(Duration::ZERO),
            "past the expected count"
        );
        assert_eq!(Progress::default().eta(10), None, "no rate yet");
    }
}
