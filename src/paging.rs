//! Listings as streams of pages, shared by both providers.
//!
//! A listing is a `fetch(state) -> (page, next state)` function. [`pages`] turns it into a
//! stream that, with `read_ahead` > 0, fetches up to that many pages ahead of the consumer on a
//! spawned task (so the next request is in flight while the caller works on this page), and with
//! 0 fetches only when polled. After an error nothing more is fetched.

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, Stream, StreamExt as _};

use crate::error::{Error, Provider};

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
        let task = tokio::spawn(async move {
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
        });
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
        match &mut this.state {
            PagesState::Running(running) => running.pages.poll_next_unpin(cx),
            PagesState::NotStarted(_) => unreachable!("started just above"),
        }
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

/// Ends a cursor listing on an absent or empty cursor, and with an error (never a loop) when
/// the service hands back a cursor it gave before. The page that carried the repeated cursor is
/// still delivered; the error comes instead of the next request.
#[derive(Debug, Default)]
pub(crate) struct CursorGuard {
    seen: HashSet<String>,
}

impl CursorGuard {
    /// Admits the cursor of the page about to be fetched.
    pub(crate) fn admit(&mut self, provider: Provider, cursor: &str) -> Result<(), Error> {
        if self.seen.insert(cursor.to_string()) {
            return Ok(());
        }
        Err(Error::bad_response(
            provider,
            None,
            format!("the listing repeated cursor {cursor:?}; stopping instead of looping"),
        ))
    }
}

/// The cursor of the next page: `None` (the listing is complete) when absent or empty.
pub(crate) fn next_cursor(cursor: Option<String>) -> Option<String> {
    cursor.filter(|c| !c.is_empty())
}

/// Boxes a listing step future (the type every `fetch` returns).
pub(crate) fn boxed<T, S>(
    step: impl Future<Output = Step<T, S>> + Send + 'static,
) -> BoxFuture<'static, Step<T, S>> {
    step.boxed()
}
