//! Deleting every key under a prefix as a job: the store's own listing and bulk deletes (the
//! facades' calls), a page at a time, journaled, counted and within the client's budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};

use super::journal::{ChunkDone, JobId, Journal};
use super::{
    Counters, JobOptions, MAX_DIFFERENCES, Progress, Tracker, finish_journal, open_journal,
    record_chunk,
};
use crate::bulk::FailedKey;
use crate::error::Error;
use crate::kv::KvStore;
use crate::transport::observed::{counting, counting_stream};

/// What a [`delete_prefix`] did, over every run of the job, or on a dry run would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteReport {
    /// Keys listed under the prefix.
    pub listed: u64,
    /// Keys deleted (the store acknowledged each; one already gone counts).
    pub deleted: u64,
    /// Keys not deleted, each with the reason (`index`: the key's place in its listing page).
    pub failed: Vec<FailedKey>,
    /// On a dry run, the keys it would delete, at most [`MAX_DIFFERENCES`] of them.
    pub to_delete_keys: Vec<String>,
    /// Requests this run sent (listing pages and deletes, retries included).
    pub requests: u64,
    /// Time this run's requests waited for a budget ([`Progress::budget_wait`](super::Progress)).
    pub budget_wait: Duration,
}

/// Deletes every key under [`JobOptions::prefix`] of `store`: a listing page at a time, each
/// page's keys in the store's bulk deletes ([`JobOptions::concurrency`] requests at a time;
/// Fastly has no bulk delete, so one request a key). With [`JobOptions::dry_run`] it deletes
/// nothing and reports what it would. An empty prefix deletes the whole store.
///
/// With [`JobOptions::journal`] it is resumable: each page is journaled once deleted, and a run
/// again adds to the counts of the runs before and lists from the start (what was deleted is
/// gone from the listing; a key a Cloudflare listing still shows for the minute its deletion
/// takes to spread is deleted, and counted, again; keys a killed run deleted in a page it had not
/// journaled are not counted; a key refused in a run before and listed again is reported again).
/// A key the store refuses is reported; a request that fails as a
/// whole (an outage, a credential) ends the job with that error, its page unjournaled.
///
/// ```
/// # async fn demo() -> Result<(), edgekv::Error> {
/// use edgekv::kv::{BulkItem, Capabilities, KvStore, MemoryStore};
/// use edgekv::transfer::{JobOptions, delete_prefix};
///
/// let store = MemoryStore::new(Capabilities::cloudflare());
/// let items = ["tmp/a", "tmp/b", "keep"].map(|key| Ok(BulkItem::new(key, "v")));
/// store.bulk_put(Box::pin(futures_util::stream::iter(items)), 1).await?;
///
/// let planned = delete_prefix(&store, &JobOptions::new().prefix("tmp/").dry_run(true)).await?;
/// assert_eq!(planned.to_delete_keys, ["tmp/a", "tmp/b"]);
/// let report = delete_prefix(&store, &JobOptions::new().prefix("tmp/")).await?;
/// assert_eq!((report.deleted, report.failed.len(), store.len()), (2, 0, 1));
/// # Ok(())
/// # }
/// ```
pub async fn delete_prefix(
    store: &dyn KvStore,
    options: &JobOptions,
) -> Result<DeleteReport, Error> {
    let concurrency = crate::bulk::concurrency(options.concurrency)?.get();
    let mut report = DeleteReport::default();
    let counters = Counters::default();
    if options.dry_run {
        let pages = counting_stream(counters.source.clone(), store.list(&options.prefix, None));
        let mut pages = std::pin::pin!(pages);
        while let Some(page) = pages.try_next().await? {
            report.listed += page.keys.len() as u64;
            let room = MAX_DIFFERENCES.saturating_sub(report.to_delete_keys.len());
            let keys = page.keys.into_iter().map(|k| k.key).take(room);
            report.to_delete_keys.extend(keys);
        }
        report.requests = counters.source.requests();
        report.budget_wait = counters.source.budget_wait();
        return Ok(report);
    }

    if let Some(max) = options.max_duration.filter(|_| !super::resuming(options)) {
        let keys = match options.expected_keys {
            Some(keys) => keys,
            None => super::count_keys(store, &options.prefix).await?,
        };
        let capabilities = store.capabilities();
        let pages = keys.div_ceil(1000);
        // A page's keys go in one request (Cloudflare) or one a key (Fastly).
        let per_request = capabilities.bulk_delete_max.clamp(1, 1000) as u64;
        let deletes = pages.max(keys.div_ceil(per_request));
        let counted = if capabilities.budget.counts_reads {
            pages.saturating_add(deletes)
        } else {
            deletes
        };
        super::within(max, "store", super::at_budget(counted, capabilities.budget))?;
    }
    let job = JobId::new("delete", &options.prefix, store.id(), String::new());
    let mut journal = open_journal(options, job).await?;
    let resume = journal.as_mut().map(Journal::resume).unwrap_or_default();
    let journal = journal.map(|j| Arc::new(Mutex::new(j)));
    for done in &resume.before {
        add(&mut report, done);
    }
    if resume.finished {
        return Ok(report);
    }
    // Its progress counts the keys deleted as `copied`.
    let tracker = Tracker::starting(Progress {
        chunks: resume.before.len() as u64,
        listed: report.listed,
        copied: report.deleted,
        failed: report.failed.len() as u64,
        ..Progress::default()
    });
    if !resume.listing_over() {
        let pages = counting_stream(counters.source.clone(), store.list(&options.prefix, None));
        let mut pages = std::pin::pin!(pages);
        let mut seq = resume.watermark;
        while let Some(page) = pages.try_next().await? {
            let keys: Vec<String> = page.keys.into_iter().map(|k| k.key).collect();
            let listed = keys.len();
            let stream = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
            let deleted = counting(&counters.source, store.bulk_delete(stream, concurrency));
            let deleted = deleted.await?;
            super::stop_on_failed_requests(store, &deleted.failed)?;
            // A delete job's chunk: `copied` counts the keys deleted.
            // The listing starts again on each run: the chain is of chunks, each after the one
            // before.
            let done = ChunkDone {
                seq,
                from: (seq > 0).then(String::new),
                next: page.cursor.map(|_| String::new()),
                listed: listed as u64,
                copied: deleted.deleted,
                failed: deleted.failed.into_iter().map(Into::into).collect(),
                ..ChunkDone::default()
            };
            seq += 1;
            if let Some(journal) = &journal {
                record_chunk(journal.clone(), done.clone()).await?;
            }
            add(&mut report, &done);
            tracker.chunk_done(options, &done, &counters);
        }
    }
    if let Some(journal) = journal {
        finish_journal(journal).await?;
    }
    report.requests = counters.source.requests();
    report.budget_wait = counters.source.budget_wait();
    Ok(report)
}

fn add(report: &mut DeleteReport, done: &ChunkDone) {
    report.listed += done.listed;
    report.deleted += done.copied;
    report
        .failed
        .extend(done.failed.iter().map(FailedKey::from));
}
