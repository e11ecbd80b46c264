//! What both providers' bulk calls share: the report that accounts for every submitted key, the
//! checks of their options, lazy chunking of entries into bounded request bodies, and the runner
//! that sends chunks a bounded number at a time and merges their reports.

use std::num::NonZeroUsize;

use futures_util::{Stream, StreamExt as _};

use crate::error::{Error, InvalidInput};

/// A key a bulk call did not write (or delete).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedKey {
    /// The key.
    pub key: String,
    /// Its position in what the caller submitted, from 0.
    pub index: u64,
    /// Why it was not written.
    pub reason: String,
    /// Whether sending it again may succeed.
    pub failure: Failure,
}

impl FailedKey {
    pub(crate) fn new(key: String, index: u64, reason: String, failure: Failure) -> FailedKey {
        FailedKey {
            key,
            index,
            reason,
            failure,
        }
    }
}

/// What kind of failure kept a key from being written or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The key or its entry was refused: by the client before sending, or by the service's
    /// answer (a line it names, or a 4xx that says the request itself is wrong). Sent again as
    /// it is, it fails again.
    Refused,
    /// Its request failed as a whole: no answer, a timeout, a 5xx or a 429 with the retries
    /// spent, a credential or a store the service does not know (401, 403, 404), an answer that
    /// cannot be read. Whether it was written is not known; sending it again may succeed.
    RequestFailed,
}

impl Failure {
    /// The kind of failure `error` is, for the keys of the request it ended.
    pub(crate) fn of(error: &Error) -> Failure {
        match error {
            Error::InvalidInput(_) => Failure::Refused,
            Error::Api(e) => match e.status.as_u16() {
                401 | 403 | 404 | 408 | 429 => Failure::RequestFailed,
                400..=499 => Failure::Refused,
                // A 5xx, or an answer that says it failed without a failing status.
                _ => Failure::RequestFailed,
            },
            Error::Transport(_) | Error::BadResponse(_) | Error::Caller(_) => {
                Failure::RequestFailed
            }
        }
    }
}

/// What a bulk write or delete did: every submitted key is either counted in `written` or
/// named in `failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkReport {
    /// Keys written.
    pub written: u64,
    /// Keys deleted (a key already gone counts: it is gone either way).
    pub deleted: u64,
    /// Keys not written or not deleted, each with the reason.
    pub failed: Vec<FailedKey>,
}

impl BulkReport {
    /// The number of entries submitted: `written + deleted + failed.len()`.
    pub fn submitted(&self) -> u64 {
        self.written + self.deleted + self.failed.len() as u64
    }

    /// Reports every key of `keys` (with its caller's index) as not written, for `reason`.
    pub(crate) fn fail_all<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (&'k str, u64)>,
        reason: &str,
        failure: Failure,
    ) {
        self.failed
            .extend(keys.into_iter().map(|(key, index)| FailedKey {
                key: key.to_string(),
                index,
                reason: reason.to_string(),
                failure,
            }));
    }

    pub(crate) fn absorb(&mut self, other: BulkReport) {
        self.written += other.written;
        self.deleted += other.deleted;
        self.failed.extend(other.failed);
    }
}

/// The most bytes of a reason a report keeps from the service's text: one reason can be copied
/// to every line of a chunk, so its size is multiplied by up to 10,000.
pub(crate) const MAX_REASON_BYTES: usize = 512;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, marked when cut.
pub(crate) fn clip(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// A chunk's wire body and, in the same order, each item's index in the caller's input.
pub(crate) struct Chunk<B> {
    pub(crate) body: B,
    pub(crate) indices: Vec<u64>,
    pub(crate) rejected: Vec<FailedKey>,
}

impl<B> Chunk<B> {
    /// The body, its items' indices, and the chunk's report so far: the entries refused before
    /// sending.
    pub(crate) fn start(self) -> (B, Vec<u64>, BulkReport) {
        let report = BulkReport {
            failed: self.rejected,
            ..BulkReport::default()
        };
        (self.body, self.indices, report)
    }
}

/// A key refused before sending, as reported.
pub(crate) fn refused(key: &str, index: u64, error: &InvalidInput) -> FailedKey {
    FailedKey {
        key: key.to_string(),
        index,
        reason: format!("refused before sending: {error}"),
        failure: Failure::Refused,
    }
}

/// Refuses an item too large for any request: `size` bytes, plus the body's brackets, over
/// `max_bytes`.
pub(crate) fn check_fits(
    key: &str,
    index: u64,
    size: usize,
    max_bytes: usize,
) -> Result<(), FailedKey> {
    if size.saturating_add(2) <= max_bytes {
        return Ok(());
    }
    Err(FailedKey {
        key: key.to_string(),
        index,
        reason: format!("the entry alone is {size} bytes, over the request bound of {max_bytes}"),
        failure: Failure::Refused,
    })
}

/// The smallest request bound a bulk call takes.
pub(crate) const MIN_REQUEST_BYTES: usize = 1024;

/// The `concurrency` option of a bulk call: at least 1 request in flight.
pub(crate) fn concurrency(concurrency: usize) -> Result<NonZeroUsize, InvalidInput> {
    NonZeroUsize::new(concurrency).ok_or(InvalidInput::OutOfRange {
        what: "concurrency",
        allowed: "at least 1",
    })
}

/// The `max_request_bytes` option of a bulk call: [`MIN_REQUEST_BYTES`] to `max` (`allowed`
/// says so in words).
pub(crate) fn check_request_bytes(
    max_request_bytes: usize,
    max: usize,
    allowed: &'static str,
) -> Result<(), InvalidInput> {
    if (MIN_REQUEST_BYTES..=max).contains(&max_request_bytes) {
        return Ok(());
    }
    Err(InvalidInput::OutOfRange {
        what: "max_request_bytes",
        allowed,
    })
}

impl<T> Chunk<Vec<T>> {
    pub(crate) fn map_body<B>(self, wrap: fn(Vec<T>) -> B) -> Chunk<B> {
        Chunk {
            body: wrap(self.body),
            indices: self.indices,
            rejected: self.rejected,
        }
    }
}

/// Groups a stream into chunks of at most `max_items` items and `max_bytes` bytes (each item's
/// size as `prepare` reports it, plus 2 for the brackets), built only as they are pulled.
/// Entries `prepare` refuses travel with the chunk being built, to be reported.
pub(crate) fn chunked<'a, E, T>(
    entries: futures_util::stream::BoxStream<'a, E>,
    max_items: usize,
    max_bytes: usize,
    prepare: impl FnMut(u64, E) -> Result<(T, usize), FailedKey> + Send + 'a,
) -> impl Stream<Item = Chunk<Vec<T>>> + Send + 'a
where
    E: Send + 'a,
    T: Send + 'a,
{
    let state = (entries, 0u64, None::<(u64, T, usize)>, prepare);
    futures_util::stream::unfold(
        state,
        move |(mut entries, mut next_index, mut carried, mut prepare)| async move {
            let mut chunk = Chunk {
                body: Vec::new(),
                indices: Vec::new(),
                rejected: Vec::new(),
            };
            let mut bytes = 2usize;
            if let Some((index, item, size)) = carried.take() {
                chunk.body.push(item);
                chunk.indices.push(index);
                bytes += size;
            }
            loop {
                let Some(entry) = entries.next().await else {
                    let empty = chunk.body.is_empty() && chunk.rejected.is_empty();
                    return (!empty).then_some((chunk, (entries, next_index, None, prepare)));
                };
                let index = next_index;
                next_index += 1;
                match prepare(index, entry) {
                    Err(failed) => chunk.rejected.push(failed),
                    Ok((item, size)) => {
                        if chunk.body.len() == max_items
                            || (!chunk.body.is_empty() && bytes.saturating_add(size) > max_bytes)
                        {
                            return Some((
                                chunk,
                                (entries, next_index, Some((index, item, size)), prepare),
                            ));
                        }
                        bytes = bytes.saturating_add(size);
                        chunk.body.push(item);
                        chunk.indices.push(index);
                    }
                }
            }
        },
    )
}

/// Runs `send` on every chunk, `concurrency` at a time (chunks are pulled only as a slot frees, so
/// memory stays about chunk size × concurrency), and merges the reports in the order they end.
/// A chunk's failures belong in its report: nothing ends a run early, so no chunk is abandoned
/// mid-request. A caller's stream that fails ends the chunks instead ([`until_error`]).
pub(crate) async fn run<C, F, Fut>(
    chunks: impl Stream<Item = C>,
    concurrency: NonZeroUsize,
    send: F,
) -> BulkReport
where
    F: FnMut(C) -> Fut,
    Fut: Future<Output = BulkReport>,
{
    let mut report = BulkReport::default();
    let outcomes = chunks.map(send).buffer_unordered(concurrency.get());
    let mut outcomes = std::pin::pin!(outcomes);
    while let Some(outcome) = outcomes.next().await {
        report.absorb(outcome);
    }
    report
}

/// Where a bulk call keeps the error that ended the caller's stream ([`until_error`]), to end
/// the call with once what was read before is sent.
#[derive(Default)]
pub(crate) struct Stop(std::sync::Mutex<Option<Error>>);

impl Stop {
    /// The call's outcome: `report`, or the stream's error with `report` attached.
    pub(crate) fn finish(self, report: BulkReport) -> Result<BulkReport, Error> {
        match self
            .0
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(error) => Err(error.with_partial(report)),
            None => Ok(report),
        }
    }
}

/// The items of a caller's fallible stream up to its first error, which `stop` keeps: nothing
/// is read after it, and everything read before is still sent and reported.
pub(crate) fn until_error<'a, T, E>(
    stream: impl Stream<Item = Result<T, E>> + Send + 'a,
    stop: &'a Stop,
) -> impl Stream<Item = T> + Send + 'a
where
    T: Send + 'a,
    E: Into<Error>,
{
    stream
        .map(move |item| match item {
            Ok(item) => Some(item),
            Err(error) => {
                *stop
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.into());
                None
            }
        })
        .take_while(|item| std::future::ready(item.is_some()))
        .filter_map(std::future::ready)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::StreamExt as _;

    use super::{
        BulkReport, Chunk, FailedKey, Failure, MAX_REASON_BYTES, Stop, check_fits,
        check_request_bytes, chunked, clip, concurrency, run, until_error,
    };
    use crate::error::{Error, InvalidInput};

    /// Chunks of `sizes` (an item per size; 0 is refused), at most `max_items` items and
    /// `max_bytes` bytes each, as (items, indices, refused indices).
    async fn chunks_of(
        sizes: &[usize],
        max_items: usize,
        max_bytes: usize,
    ) -> Vec<(Vec<usize>, Vec<u64>, Vec<u64>)> {
        let entries = futures_util::stream::iter(sizes.to_vec()).boxed();
        let prepare = |index: u64, size: usize| {
            if size == 0 {
                return Err(FailedKey {
                    key: format!("k{index}"),
                    index,
                    reason: "refused".into(),
                    failure: Failure::Refused,
                });
            }
            Ok((size, size))
        };
        chunked(entries, max_items, max_bytes, prepare)
            .map(|c: Chunk<Vec<usize>>| {
                let refused = c.rejected.iter().map(|f| f.index).collect();
                (c.body, c.indices, refused)
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn chunks_close_at_the_item_or_byte_bound_and_keep_every_index() {
        // 2 items at most.
        let by_items = chunks_of(&[1, 1, 1, 1, 1], 2, usize::MAX).await;
        let bodies: Vec<Vec<u64>> = by_items.iter().map(|c| c.1.clone()).collect();
        assert_eq!(bodies, [vec![0, 1], vec![2, 3], vec![4]]);
        // 10 bytes at most, 2 of them the brackets: 4 + 4 fit, a third 4 does not.
        let by_bytes = chunks_of(&[4, 4, 4, 8], 100, 10).await;
        let sizes: Vec<Vec<usize>> = by_bytes.iter().map(|c| c.0.clone()).collect();
        assert_eq!(sizes, [vec![4, 4], vec![4], vec![8]]);
    }

    #[tokio::test]
    async fn refused_entries_travel_with_the_chunk_being_built() {
        let chunks = chunks_of(&[1, 0, 1, 1, 0], 2, usize::MAX).await;
        assert_eq!(
            chunks,
            [
                (vec![1, 1], vec![0, 2], vec![1]),
                (vec![1], vec![3], vec![4]),
            ]
        );
        // Only refused entries: one chunk with nothing to send, still reported.
        let refused_only = chunks_of(&[0, 0], 2, usize::MAX).await;
        assert_eq!(refused_only, [(vec![], vec![], vec![0, 1])]);
        assert!(chunks_of(&[], 2, usize::MAX).await.is_empty());
    }

    #[test]
    fn a_chunk_starts_its_report_with_the_refused_entries() {
        let refused = FailedKey {
            key: "k".into(),
            index: 3,
            reason: "refused".into(),
            failure: Failure::Refused,
        };
        let chunk = Chunk {
            body: vec!["a"],
            indices: vec![2],
            rejected: vec![refused.clone()],
        };
        let (body, indices, report) = chunk.start();
        assert_eq!((body, indices), (vec!["a"], vec![2]));
        assert_eq!(report.written, 0);
        assert_eq!(report.failed, [refused]);
    }

    #[test]
    fn an_item_fits_when_it_and_the_brackets_are_within_the_bound() {
        assert!(check_fits("k", 0, 8, 10).is_ok());
        let refused = check_fits("k", 7, 9, 10).unwrap_err();
        assert_eq!((refused.key.as_str(), refused.index), ("k", 7));
        assert_eq!(
            refused.reason,
            "the entry alone is 9 bytes, over the request bound of 10"
        );
        // An item whose size could not be measured (`usize::MAX`) never fits a real bound.
        assert!(check_fits("k", 0, usize::MAX, 100_000_000).is_err());
    }

    #[test]
    fn the_options_are_checked_alike_for_every_bulk_call() {
        assert_eq!(concurrency(4).unwrap().get(), 4);
        assert_eq!(
            concurrency(0),
            Err(InvalidInput::OutOfRange {
                what: "concurrency",
                allowed: "at least 1",
            })
        );
        assert!(check_request_bytes(1024, usize::MAX, "at least 1024").is_ok());
        assert!(check_request_bytes(2000, 2000, "1024 to 2000").is_ok());
        for bad in [0, 1023, 2001] {
            assert_eq!(
                check_request_bytes(bad, 2000, "1024 to 2000"),
                Err(InvalidInput::OutOfRange {
                    what: "max_request_bytes",
                    allowed: "1024 to 2000",
                })
            );
        }
    }

    fn written(n: u64) -> BulkReport {
        BulkReport {
            written: n,
            ..BulkReport::default()
        }
    }

    #[tokio::test]
    async fn the_runner_merges_every_report_with_at_most_concurrency_in_flight() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let chunks = futures_util::stream::iter(1..=6u64);
        let two = NonZeroUsize::new(2).unwrap();
        let report = run(chunks, two, |n| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                running.fetch_sub(1, Ordering::SeqCst);
                let mut report = written(n);
                report.fail_all([("k", n)], "no", Failure::Refused);
                report
            }
        })
        .await;
        assert_eq!(report.written, 21);
        let mut failed: Vec<u64> = report.failed.iter().map(|f| f.index).collect();
        failed.sort_unstable();
        assert_eq!(failed, [1, 2, 3, 4, 5, 6]);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failing_stream_ends_at_its_error_with_what_came_before_reported() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counted = pulled.clone();
        let items = futures_util::stream::iter(0..100u64)
            .inspect(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            })
            .map(|n| match n {
                3 => Err(Error::bad_response(crate::Provider::Fastly, None, "broke")),
                n => Ok(n),
            });
        let stop = Stop::default();
        let two = NonZeroUsize::new(2).unwrap();
        let report = run(until_error(items, &stop), two, |n| async move {
            let mut report = written(1);
            report.fail_all([("sent", n)], "as a record of which", Failure::Refused);
            report
        })
        .await;
        let mut sent: Vec<u64> = report.failed.iter().map(|f| f.index).collect();
        sent.sort_unstable();
        assert_eq!(sent, [0, 1, 2], "everything read before the error was sent");
        assert_eq!(pulled.load(Ordering::SeqCst), 4, "nothing is read after it");
        let error = stop.finish(report).unwrap_err();
        assert!(matches!(&error, Error::BadResponse(e) if e.reason == "broke"));
        assert_eq!(error.partial_report().map(|r| r.written), Some(3));
        let debug = format!("{error:?}");
        assert!(debug.contains("3 written, 0 deleted, 3 failed"), "{debug}");
        assert!(!debug.contains("\"sent\""), "no key in Debug: {debug}");

        // Input refused locally has no room for a report: it becomes the stream's error.
        let refused = Error::InvalidInput(InvalidInput::UnaddressableId);
        let stop = Stop::default();
        let items = futures_util::stream::iter([Ok(1u64), Err(refused)]);
        let report = run(
            until_error(items, &stop),
            two,
            |n| async move { written(n) },
        )
        .await;
        let error = stop.finish(report).unwrap_err();
        assert!(matches!(error, Error::Caller(_)), "{error:?}");
        assert_eq!(error.partial_report().map(|r| r.written), Some(1));
        assert!(std::error::Error::source(&error).is_some());

        // A stream that does not fail ends the call with its report.
        let stop = Stop::default();
        let items = futures_util::stream::iter([Ok::<_, Error>(1u64), Ok(2)]);
        let report = run(
            until_error(items, &stop),
            two,
            |n| async move { written(n) },
        )
        .await;
        assert_eq!(stop.finish(report).unwrap().written, 3);
    }

    #[test]
    fn a_short_reason_is_kept_and_a_long_one_cut_at_a_character() {
        assert_eq!(clip("bad line".into()), "bad line");
        let exact = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(clip(exact.clone()), exact);
        // A 3-byte character straddling the limit is dropped whole.
        let straddling = format!("{}€€", "x".repeat(MAX_REASON_BYTES - 1));
        let clipped = clip(straddling);
        assert_eq!(clipped, format!("{}…", "x".repeat(MAX_REASON_BYTES - 1)));
    }
}
