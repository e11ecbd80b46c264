//! The answer a successful call came with, for callers that ask ([`WithAnswer`]): its status,
//! headers and request id. Opt-in, so calls that do not ask keep nothing.
//!
//! The attempt loop notes each answer in a slot the caller's future carries (a tokio task-local,
//! set only around a call wrapped by `with_answer`); without the wrapper the note is one
//! thread-local lookup that finds no slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::task::futures::TaskLocalFuture;

use crate::error::{Error, Provider};
use crate::transport::hooks::request_id;

/// The status and headers of the answer a call ended with, from
/// [`with_answer`](WithAnswer::with_answer).
///
/// For a call that makes several requests (bulk calls, prefix deletes with their listing, a
/// Cloudflare bulk get split in halves) it is the last answer to arrive; for a retried call,
/// the last attempt's. A lookup a call makes on the side (whether a Fastly store exists after a
/// 404) is not it. Listings (`keys()`, `stores()`) are streams, not calls: they give none.
/// Cloudflare's [`Reply`](crate::cloudflare::Reply) is another thing: the envelope's
/// `messages` next to a result.
///
/// `Debug` shows the status, provider and request id; [`headers`](Self::headers) gives every
/// header as the server sent it.
#[derive(Clone)]
pub struct Answer {
    provider: Provider,
    status: StatusCode,
    headers: HeaderMap,
}

impl Answer {
    /// The provider that answered.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Every header of the answer, as the server sent it.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// What identifies the answer to the provider's support, the same as
    /// [`Error::request_id`]: Cloudflare's `CF-Ray`; for Fastly, whose API answers carry no
    /// request-id header, `X-Served-By` and `X-Timer` joined by a space.
    pub fn request_id(&self) -> Option<String> {
        request_id(&self.headers)
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("provider", &self.provider)
            .field("status", &self.status)
            .field("request_id", &self.request_id())
            .finish_non_exhaustive()
    }
}

type Slot = Arc<Mutex<Option<Answer>>>;

tokio::task_local! {
    static WATCHED: Slot;
    /// What a part of a job (one side of a copy) spent, counted for its report.
    static COUNTED: Arc<Tally>;
}

/// What the calls of a part of a job spent: requests sent, and time waited for a budget (the
/// client's limit, or the wait a provider's 429 asked for). Waits of concurrent calls add up.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    requests: std::sync::atomic::AtomicU64,
    budget_wait_micros: std::sync::atomic::AtomicU64,
}

impl Tally {
    /// Requests sent so far.
    #[cfg(feature = "transfer")]
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time waited for a budget so far.
    #[cfg(feature = "transfer")]
    pub(crate) fn budget_wait(&self) -> std::time::Duration {
        let micros = self
            .budget_wait_micros
            .load(std::sync::atomic::Ordering::Relaxed);
        std::time::Duration::from_micros(micros)
    }
}

/// Counts a request sent, for a job that counts its side's requests (none: nothing counted).
pub(crate) fn count_request() {
    let _ = COUNTED.try_with(|tally| {
        tally
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    });
}

/// Counts time a request waited for a budget, for a job that counts it.
pub(crate) fn waited_for_budget(wait: std::time::Duration) {
    let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
    let _ = COUNTED.try_with(|tally| {
        tally
            .budget_wait_micros
            .fetch_add(micros, std::sync::atomic::Ordering::Relaxed)
    });
}

/// `future`, its requests added to `counter`.
#[cfg(feature = "transfer")]
pub(crate) fn counting<F: Future>(
    counter: &Arc<Tally>,
    future: F,
) -> impl Future<Output = F::Output> {
    COUNTED.scope(counter.clone(), future)
}

/// `stream`, the requests made while it is polled added to `counter` (a listing's read-ahead
/// task too: it is spawned while polled, and [`carried`] takes the counter along).
#[cfg(feature = "transfer")]
pub(crate) fn counting_stream<S: futures_util::Stream + Unpin>(
    counter: Arc<Tally>,
    mut stream: S,
) -> impl futures_util::Stream<Item = S::Item> {
    use futures_util::StreamExt as _;
    futures_util::stream::poll_fn(move |cx| {
        COUNTED.sync_scope(counter.clone(), || stream.poll_next_unpin(cx))
    })
}

/// Notes an answer for a caller that asked for it (none asked: nothing is kept).
pub(crate) fn note(provider: Provider, status: StatusCode, headers: &HeaderMap) {
    let _ = WATCHED.try_with(|slot| {
        let answer = Answer {
            provider,
            status,
            headers: headers.clone(),
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
    });
}

/// `future`, its answers noted where the caller's call notes them: for work a call spawns (a
/// listing's read-ahead), which a task-local would not otherwise follow.
pub(crate) fn carried<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let slot = WATCHED.try_with(Arc::clone).ok();
    let counter = COUNTED.try_with(Arc::clone).ok();
    async move {
        let counted = async move {
            match counter {
                Some(counter) => COUNTED.scope(counter, future).await,
                None => future.await,
            }
        };
        match slot {
            Some(slot) => WATCHED.scope(slot, counted).await,
            None => counted.await,
        }
    }
}

/// The answer of any facade call, on both providers: `.with_answer()` on the call's future gives
/// the value with the [`Answer`] it came with. `None` for a call that sent no request (a bulk
/// call given nothing to send).
///
/// ```no_run
/// use edgekv::WithAnswer as _;
///
/// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
/// let (item, answer) = store.get("apple").with_answer().await?;
/// if let Some(answer) = answer {
///     println!("{} {:?}", answer.status(), answer.request_id());
/// }
/// # Ok(())
/// # }
/// ```
pub trait WithAnswer<T>: Future<Output = Result<T, Error>> + Sized {
    /// This call, giving the answer it ended with as well as its value.
    fn with_answer(self) -> WithAnswerFuture<Self> {
        let slot = Slot::default();
        WithAnswerFuture {
            call: Box::pin(WATCHED.scope(slot.clone(), self)),
            slot,
        }
    }
}

impl<T, F: Future<Output = Result<T, Error>>> WithAnswer<T> for F {}

/// The future of [`WithAnswer::with_answer`]: `Send` when the call's future is.
pub struct WithAnswerFuture<F> {
    call: Pin<Box<TaskLocalFuture<Slot, F>>>,
    slot: Slot,
}

impl<F> std::fmt::Debug for WithAnswerFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithAnswerFuture").finish_non_exhaustive()
    }
}

impl<T, F: Future<Output = Result<T, Error>>> Future for WithAnswerFuture<F> {
    type Output = Result<(T, Option<Answer>), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.call.as_mut().poll(cx).map(|result| {
            let answer = this
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            result.map(|value| (value, answer))
        })
    }
}
