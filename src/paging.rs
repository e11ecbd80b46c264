//! Listings as streams of pages, shared by both providers.
//!
//! A listing is a `fetch(state) -> (page, next state)` function. [`pages`] turns it into a
//! stream that, with `read_ahead` > 0, fetches up to that many pages ahead of the consumer on a
//! spawned task (so the next request is in flight while the caller works on this page), and with
//! 0 fetches only when polled. After an error nothing more is fetched.
//!
//! [`by_cursor`] is the one cursor listing (Fastly stores and keys, Cloudflare keys): the cursor
//! guard, the end of the listing and the prefix's redaction are here, and each facade only asks
//! for a page. Cloudflare's namespace listing is numbered by page, not by cursor: it uses
//! [`pages`] directly.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, Stream, StreamExt as _};

use crate::error::{Error, Provider, Secrets};

/// One step of a listing: this page, and the state to fetch the next (`None` after the last).
pub(crate) type Step<T, S> = Result<(T, Option<S>), Error>;

/// A stream of listing pages; see the module docs.
pub(crate) struct Pages<T> {
    state: PagesState<T>,
}

enum PagesState<T> {
    /// Not polled yet: the task is spawned on first poll, inside the caller's runtime.
    NotStarted(Box<dyn FnOnce() -> Running<T> + Send>),
    Running(Running<T>),
    /// Ended: polled again (a consumer may), it stays ended rather than polling what ended.
    Ended,
}

struct Running<T> {
    pages: BoxStream<'static, Result<T, Error>>,
    _task: Option<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds the stream of pages of a listing starting at `first`.
pub(crate) fn pages<T, S, F>(read_ahead: usize, first: S, mut fetch: F) -> Pages<T>
where
    T: Send + 'static,
    S: Send + 'static,
    F: FnMut(S) -> BoxFuture<'static, Step<T, S>> + Send + 'static,
{
    let start = move || {
        if read_ahead == 0 {
            let lazy = futures_util::stream::unfold(
                (Some(first), fetch),
                |(state, mut fetch)| async move {
                    let state = state?;
                    Some(match fetch(state).await {
                        Ok((page, next)) => (Ok(page), (next, fetch)),
                        Err(error) => (Err(error), (None, fetch)),
                    })
                },
            );
            return Running {
                pages: lazy.boxed(),
                _task: None,
            };
        }
        let (sender, receiver) = tokio::sync::mpsc::channel(read_ahead);
        let task = tokio::spawn(crate::transport::observed::carried(async move {
            let mut state = first;
            // A slot is reserved before fetching, so at most `read_ahead` pages wait unread.
            while let Ok(slot) = sender.reserve().await {
                match fetch(state).await {
                    Ok((page, next)) => {
                        slot.send(Ok(page));
                        match next {
                            Some(next) => state = next,
                            None => return,
                        }
                    }
                    Err(error) => {
                        slot.send(Err(error));
                        return;
                    }
                }
            }
        }));
        let pages = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|page| (page, receiver))
        });
        Running {
            pages: pages.boxed(),
            _task: Some(AbortOnDrop(task)),
        }
    };
    Pages {
        state: PagesState::NotStarted(Box::new(start)),
    }
}

impl<T> Stream for Pages<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let PagesState::NotStarted(start) = &mut this.state {
            let start = std::mem::replace(start, Box::new(|| unreachable!("started once")));
            this.state = PagesState::Running(start());
        }
        let next = match &mut this.state {
            PagesState::Running(running) => running.pages.poll_next_unpin(cx),
            PagesState::Ended => return Poll::Ready(None),
            PagesState::NotStarted(_) => unreachable!("started just above"),
        };
        if let Poll::Ready(None) = next {
            this.state = PagesState::Ended;
        }
        next
    }
}

/// Flattens a stream of pages into a stream of their items.
pub(crate) fn items<T, I>(
    pages: Pages<T>,
    into_items: fn(T) -> Vec<I>,
) -> BoxStream<'static, Result<I, Error>>
where
    T: Send + 'static,
    I: Send + 'static,
{
    pages
        .flat_map(move |page| {
            let items: Vec<Result<I, Error>> = match page {
                Ok(page) => into_items(page).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            futures_util::stream::iter(items)
        })
        .boxed()
}

/// A page of a cursor listing: its items, and the cursor of the next page (`None` on the last),
/// which the facades hand to the caller to resume from.
pub(crate) struct CursorPage<I> {
    pub(crate) items: Vec<I>,
    pub(crate) cursor: Option<String>,
}

/// The pages of a cursor listing from `start` (`None`: the beginning). `fetch(cursor)` returns a
/// future that requests the page at `cursor` and answers its items with the cursor the service
/// gave for the next page; that future is polled only once its cursor has been admitted by the
/// [`CursorGuard`]. The listing ends on an absent or empty cursor. `prefix`, the caller's and
/// sent with every request, is replaced in every error of the listing.
pub(crate) fn by_cursor<I, F, Fut>(
    provider: Provider,
    read_ahead: usize,
    start: Option<String>,
    prefix: Option<String>,
    mut fetch: F,
) -> Pages<CursorPage<I>>
where
    I: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<I>, Option<String>), Error>> + Send + 'static,
{
    let first = (start, CursorGuard::default());
    pages(read_ahead, first, move |(cursor, mut guard)| {
        let admitted = match &cursor {
            Some(cursor) => guard.admit(provider, cursor),
            None => Ok(()),
        };
        let page = admitted.map(|()| fetch(cursor));
        let prefix = prefix.clone();
        boxed(async move {
            let secrets = Secrets::new().with_opt(prefix.as_deref(), "<prefix>");
            crate::error::redacting(secrets, async move {
                let (items, next) = page?.await?;
                let next = next_cursor(next);
                let page = CursorPage {
                    items,
                    cursor: next.clone(),
                };
                Ok((page, next.map(|next| (Some(next), guard))))
            })
            .await
        })
    })
}

/// Ends a cursor listing on an absent or empty cursor, and with an error (never a loop) when
/// the service hands back a cursor it gave before. The page that carried the repeated cursor is
/// still delivered; the error comes instead of the next request.
#[derive(Debug, Default)]
struct CursorGuard {
    /// Each cursor's hash, not the cursor: a server can answer cursors as long as a page, and a
    /// listing of millions of pages must not keep them all. The hasher's keys are random per
    /// process, so a server cannot make two cursors collide on purpose.
    seen: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl CursorGuard {
    /// Admits the cursor of the page about to be fetched.
    fn admit(&mut self, provider: Provider, cursor: &str) -> Result<(), Error> {
        use std::hash::BuildHasher as _;
        if self.seen.insert(self.hasher.hash_one(cursor)) {
            return Ok(());
        }
        // The start of the cursor only: it is the server's text, of any length.
        let start: String = cursor.chars().take(64).collect();
        let cut = if start.len() < cursor.len() {
            "…"
        } else {
            ""
        };
        Err(Error::bad_response(
            provider,
            None,
            format!("the listing repeated cursor {start:?}{cut}; stopping instead of looping"),
        ))
    }
}

/// The cursor of the next page: `None` (the listing is complete) when absent or empty.
fn next_cursor(cursor: Option<String>) -> Option<String> {
    cursor.filter(|c| !c.is_empty())
}

/// Boxes a listing step future (the type every `fetch` returns).
pub(crate) fn boxed<T, S>(
    step: impl Future<Output = Step<T, S>> + Send + 'static,
) -> BoxFuture<'static, Step<T, S>> {
    step.boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use futures_util::future::BoxFuture;

    use super::{CursorGuard, CursorPage, Step, boxed, by_cursor, items, next_cursor, pages};
    use crate::error::{Error, Provider};

    /// A listing of pages `0..=last`, each page its own number; page `fail` is an error instead.
    /// `fetches` counts the requests made, so a test sees exactly when the stream fetched.
    fn numbered(
        last: u32,
        fail: Option<u32>,
        fetches: Arc<AtomicUsize>,
    ) -> impl FnMut(u32) -> BoxFuture<'static, Step<u32, u32>> + Send + 'static {
        move |n| {
            fetches.fetch_add(1, Ordering::SeqCst);
            boxed(async move {
                if Some(n) == fail {
                    return Err(Error::bad_response(Provider::Fastly, None, "page failed"));
                }
                Ok((n, (n < last).then_some(n + 1)))
            })
        }
    }

    /// Lets a read-ahead task run until it blocks: with time paused, the sleep ends only once
    /// every other task is idle.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fn fetched(fetches: &AtomicUsize) -> usize {
        fetches.load(Ordering::SeqCst)
    }

    fn is_page_failed(item: Option<Result<u32, Error>>) -> bool {
        matches!(item, Some(Err(Error::BadResponse(e))) if e.reason == "page failed")
    }

    #[tokio::test(start_paused = true)]
    async fn without_read_ahead_each_page_is_fetched_only_when_polled() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut stream = pages(0, 0, numbered(1, None, fetches.clone()));
        settle().await;
        assert_eq!(
            fetched(&fetches),
            0,
            "nothing is fetched before the first poll"
        );
        assert_eq!(stream.next().await.unwrap().unwrap(), 0);
        assert_eq!(fetched(&fetches), 1);
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert_eq!(fetched(&fetches), 2);
        // The last page said there is no next state: the end needs no request.
        assert!(stream.next().await.is_none());
        assert_eq!(fetched(&fetches), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn read_ahead_one_fetches_at_most_one_page_ahead() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut stream = pages(1, 0, numbered(2, None, fetches.clone()));
        settle().await;
        assert_eq!(fetched(&fetches), 0, "the task starts on the first poll");
        // While the caller holds page n, page n + 1 is fetched and waits; no more.
        for (page, expected) in [(0, 2), (1, 3), (2, 3)] {
            assert_eq!(stream.next().await.unwrap().unwrap(), page);
            settle().await;
            assert_eq!(fetched(&fetches), expected, "after page {page}");
        }
        assert!(stream.next().await.is_none());
        settle().await;
        assert_eq!(
            fetched(&fetches),
            3,
            "nothing is fetched after the last page"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_yielded_once_and_ends_the_stream() {
        for read_ahead in [0, 1] {
            let fetches = Arc::new(AtomicUsize::new(0));
            // Page 1 fails; page 2 would exist, but must never be asked for.
            let mut stream = pages(read_ahead, 0, numbered(2, Some(1), fetches.clone()));
            assert_eq!(stream.next().await.unwrap().unwrap(), 0);
            assert!(
                is_page_failed(stream.next().await),
                "read_ahead {read_ahead}"
            );
            assert!(stream.next().await.is_none(), "read_ahead {read_ahead}");
            settle().await;
            assert_eq!(fetched(&fetches), 2, "read_ahead {read_ahead}");
        }
    }

    #[tokio::test]
    async fn items_flattens_pages_in_order_and_passes_the_error_through() {
        let fetches = Arc::new(AtomicUsize::new(0));
        // Page n holds n copies of n (page 0 is empty); page 3 fails.
        let stream = items(pages(0, 0, numbered(5, Some(3), fetches)), |n: u32| {
            vec![n; n as usize]
        });
        let got: Vec<Result<u32, Error>> = stream.collect().await;
        let oks: Vec<u32> = got
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(oks, [1, 2, 2]);
        assert_eq!(got.len(), 4);
        assert!(is_page_failed(got.into_iter().next_back()));
    }

    #[tokio::test]
    async fn a_listing_polled_after_its_end_stays_ended() {
        use futures_util::StreamExt as _;
        for read_ahead in [0, 2] {
            let fetches = Arc::new(AtomicUsize::new(0));
            let mut listing = pages(read_ahead, 0, numbered(2, None, fetches));
            while listing.next().await.is_some() {}
            // A consumer that polls again (a chunker, a `select!`) gets the end again, no panic.
            assert!(listing.next().await.is_none());
            assert!(listing.next().await.is_none());
        }
    }

    #[test]
    fn a_repeated_long_cursor_is_quoted_by_its_start_only() {
        let mut guard = CursorGuard::default();
        let cursor = "c".repeat(1 << 20);
        assert!(guard.admit(Provider::Fastly, &cursor).is_ok());
        let message = guard
            .admit(Provider::Fastly, &cursor)
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.contains("repeated cursor"), "{message}");
    }

    #[test]
    fn the_guard_refuses_a_cursor_it_has_seen() {
        let mut guard = CursorGuard::default();
        assert!(guard.admit(Provider::Cloudflare, "a").is_ok());
        assert!(guard.admit(Provider::Cloudflare, "b").is_ok());
        match guard.admit(Provider::Cloudflare, "a") {
            Err(Error::BadResponse(e)) => {
                assert_eq!(e.provider, Provider::Cloudflare);
                assert_eq!(e.status, None);
                assert_eq!(
                    e.reason,
                    r#"the listing repeated cursor "a"; stopping instead of looping"#
                );
            }
            other => panic!("expected a bad response, got {other:?}"),
        }
    }

    /// What a scripted page answers: its items and the service's next cursor, or an error.
    type Answer = Result<(Vec<u32>, Option<&'static str>), &'static str>;
    /// What a page request returns to the pager.
    type Fetched = BoxFuture<'static, Result<(Vec<u32>, Option<String>), Error>>;
    /// The pages a listing yielded, as (items, cursor to resume after them).
    type Got = Vec<Result<(Vec<u32>, Option<String>), Error>>;

    /// A scripted cursor listing: request `i` answers `script[i]`; `asked` records the cursor
    /// of every request made.
    fn scripted(
        script: Vec<Answer>,
        asked: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    ) -> impl FnMut(Option<String>) -> Fetched + Send + 'static {
        let mut script = script.into_iter();
        move |cursor| {
            let answer = script.next().expect("no request past the script");
            let asked = asked.clone();
            Box::pin(async move {
                asked.lock().unwrap().push(cursor);
                match answer {
                    Ok((items, next)) => Ok((items, next.map(String::from))),
                    Err(reason) => Err(Error::bad_response(Provider::Fastly, None, reason)),
                }
            })
        }
    }

    async fn list(
        start: Option<&str>,
        prefix: Option<&str>,
        script: Vec<Answer>,
    ) -> (Got, Vec<Option<String>>) {
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pages = by_cursor(
            Provider::Fastly,
            0,
            start.map(String::from),
            prefix.map(String::from),
            scripted(script, asked.clone()),
        );
        // `take` so a listing that fails to end fails the test instead of hanging.
        let got = pages
            .take(10)
            .map(|page| page.map(|p: CursorPage<u32>| (p.items, p.cursor)))
            .collect()
            .await;
        let asked = asked.lock().unwrap().clone();
        (got, asked)
    }

    #[tokio::test]
    async fn a_cursor_listing_follows_each_cursor_until_an_absent_or_empty_one() {
        for last in [None, Some("")] {
            let script = vec![Ok((vec![1, 2], Some("c1"))), Ok((vec![3], last))];
            let (got, asked) = list(None, None, script).await;
            let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
            // Each page carries the cursor to resume after it; the last carries none.
            assert_eq!(got, [(vec![1, 2], Some("c1".to_string())), (vec![3], None)]);
            assert_eq!(asked, [None, Some("c1".to_string())]);
        }
    }

    #[tokio::test]
    async fn a_cursor_listing_resumes_at_the_cursor_given() {
        let (got, asked) = list(Some("c7"), None, vec![Ok((vec![7], None))]).await;
        assert_eq!(got.len(), 1);
        assert_eq!(asked, [Some("c7".to_string())]);
    }

    #[tokio::test]
    async fn a_repeated_cursor_ends_the_listing_without_another_request() {
        // The service answers every request with the same cursor "c", as a buggy one might.
        let script = vec![Ok((vec![0], Some("c"))), Ok((vec![1], Some("c")))];
        let (got, asked) = list(None, None, script).await;
        // The page that repeated the cursor is delivered; the error replaces the third request.
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().0, [0]);
        assert_eq!(got[1].as_ref().unwrap().0, [1]);
        assert!(matches!(&got[2], Err(Error::BadResponse(e)) if e.reason.contains(r#""c""#)));
        assert_eq!(asked.len(), 2);
    }

    #[tokio::test]
    async fn a_cursor_listing_error_ends_it_with_the_prefix_replaced() {
        let script = vec![Ok((vec![1], Some("c1"))), Err("no such prefix user/7")];
        let (got, asked) = list(None, Some("user/7"), script).await;
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[1], Err(Error::BadResponse(e)) if e.reason == "no such prefix <prefix>"),
            "{:?}",
            got[1]
        );
        assert_eq!(asked.len(), 2);
    }

    #[test]
    fn an_absent_or_empty_cursor_ends_the_listing() {
        assert_eq!(next_cursor(None), None);
        assert_eq!(next_cursor(Some(String::new())), None);
        assert_eq!(next_cursor(Some("c".into())), Some("c".to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_streams_are_send_and_static() {
        fn send_static<T: Send + 'static>(t: T) -> T {
            t
        }
        // Compiles only if both streams can move to another task; then they run there.
        let fetches = Arc::new(AtomicUsize::new(0));
        let paged = send_static(pages(1, 0, numbered(2, None, fetches.clone())));
        let flat = send_static(items(pages(0, 0, numbered(2, None, fetches)), |n| vec![n]));
        let paged = tokio::spawn(paged.map(Result::unwrap).collect::<Vec<_>>());
        let flat = tokio::spawn(flat.map(Result::unwrap).collect::<Vec<_>>());
        assert_eq!(paged.await.unwrap(), [0, 1, 2]);
        assert_eq!(flat.await.unwrap(), [0, 1, 2]);
    }
}
