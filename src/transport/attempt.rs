//! The attempt loop: the one place requests are sent, retried, timed and traced, for generated
//! and hand-written calls of both providers.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tracing::Instrument as _;

use crate::error::{CallInfo, Error, Provider, TimedOut};
use crate::policy::{self, Idempotency, RateLimit, RetryPolicy};
use crate::transport::Transport;
use crate::transport::answer::{
    ErrorBody, convert, from_reqwest, from_undecoded_body, invalid_request,
};
use crate::transport::hooks::{kept_headers, request_id};
use crate::transport::observed;

/// One facade call: what it is, for retries and logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub(crate) provider: Provider,
    pub(crate) operation: &'static str,
    /// The provider's operation table (`raw::OPERATIONS`), where logs find the method and path
    /// template: the provider registers it, the core names no provider.
    pub(crate) operations: &'static [(&'static str, &'static str, &'static str)],
    pub(crate) idempotency: Idempotency,
    /// A per-call (per-handle) retry policy overriding the client's.
    pub(crate) retry: Option<&'a RetryPolicy>,
    /// A lookup made on the side of the caller's call, whose answer is not the call's
    /// ([`Answer`](crate::Answer)).
    pub(crate) aside: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        provider: Provider,
        operations: &'static [(&'static str, &'static str, &'static str)],
        operation: &'static str,
    ) -> Self {
        Call {
            provider,
            operation,
            operations,
            idempotency: Idempotency::Idempotent,
            retry: None,
            aside: false,
        }
    }

    /// Marks a lookup made on the side of the caller's call (its answer is not the call's).
    pub(crate) fn aside(mut self) -> Self {
        self.aside = true;
        self
    }

    /// Marks a call a lost answer could make wrong when `not_idempotent`.
    pub(crate) fn not_idempotent_if(mut self, not_idempotent: bool) -> Self {
        if not_idempotent {
            self.idempotency = Idempotency::NotIdempotent;
        }
        self
    }

    pub(crate) fn retry(mut self, retry: Option<&'a RetryPolicy>) -> Self {
        self.retry = retry;
        self
    }
}

/// What an attempt learned of the answer, whatever became of its body: the status and the
/// headers the loop reads ([`kept_headers`]), if any.
type Seen = Option<(StatusCode, Option<Box<HeaderMap>>)>;

/// Runs a generated call: `make` builds each attempt, `None` when the request cannot be built
/// again (its streamed body is spent). Progenitor's error becomes the crate's here, the one place
/// for both providers; the answer's status and headers come from progenitor's value or error.
pub(crate) async fn call<T, E, F, Fut>(
    transport: &Transport,
    call: Call<'_>,
    mut make: F,
) -> Result<progenitor_client::ResponseValue<T>, Error>
where
    E: ErrorBody,
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<E>>>,
{
    let (provider, aside) = (call.provider, call.aside);
    attempts(transport, call, || {
        // Boxed where it is made: a generated call's future is large, and each move copies it.
        let attempt = Box::pin(make()?);
        Some(async move { answer_of(provider, aside, attempt.await).await })
    })
    .await
    .map_err(|e| transport.redact_credential(e))
}

/// One attempt's outcome, with the status and headers the answer came with (noted for a caller
/// that asked, unless the call is a lookup `aside`).
async fn answer_of<T, E: ErrorBody>(
    provider: Provider,
    aside: bool,
    outcome: Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<E>>,
) -> (Result<progenitor_client::ResponseValue<T>, Error>, Seen) {
    let seen = |status: StatusCode, headers: &HeaderMap| {
        if !aside {
            observed::note(provider, status, headers);
        }
        Some((status, kept_headers(headers)))
    };
    match outcome {
        Ok(value) => {
            let seen = seen(value.status(), value.headers());
            (Ok(value), seen)
        }
        Err(error) => {
            let seen = match &error {
                progenitor_client::Error::ErrorResponse(answer) => {
                    seen(answer.status(), answer.headers())
                }
                progenitor_client::Error::UnexpectedResponse(answer) => {
                    seen(answer.status(), answer.headers())
                }
                _ => None,
            };
            (Err(convert(provider, error).await), seen)
        }
    }
}

/// Whether an attempt's value leaves part of the request to send again, and after how long at
/// the least.
pub(crate) trait LeavesRest {
    fn send_again_after(&self) -> Option<Duration>;
}

impl<T> LeavesRest for progenitor_client::ResponseValue<T> {
    fn send_again_after(&self) -> Option<Duration> {
        None
    }
}

impl LeavesRest for (StatusCode, bytes::Bytes) {
    fn send_again_after(&self) -> Option<Duration> {
        None
    }
}

impl<T> LeavesRest for Answered<T> {
    fn send_again_after(&self) -> Option<Duration> {
        match self {
            Answered::Done(_) => None,
            Answered::SendAgain(_, wait) => Some(*wait),
        }
    }
}

impl<T> Answered<T> {
    fn into_inner(self) -> T {
        match self {
            Answered::Done(value) | Answered::SendAgain(value, _) => value,
        }
    }
}

/// What an answer leaves to do.
pub(crate) enum Answered<T> {
    /// Nothing: the call ends with this.
    Done(T),
    /// Send again what is left, no sooner than after the wait (Cloudflare's bulk answers name
    /// the keys they did not write; the service allows one write per second per key). If no
    /// attempt or time is left, the call ends with this.
    SendAgain(T, Duration),
}

/// [`call`] for a request an answer can leave partly done: `answered` reads each answer and
/// says whether to send again, and `make` builds the request from what is left. Every resend is
/// an attempt of the same loop as the retries, so the two never multiply: `max_attempts`
/// requests and the deadline in all.
pub(crate) async fn call_until_done<T, U, E, F, Fut, A>(
    transport: &Transport,
    call: Call<'_>,
    mut make: F,
    answered: A,
) -> Result<U, Error>
where
    E: ErrorBody,
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<E>>>,
    A: Fn(progenitor_client::ResponseValue<T>) -> Answered<U>,
{
    let (provider, aside) = (call.provider, call.aside);
    let answered = &answered;
    attempts(transport, call, || {
        let attempt = Box::pin(make()?);
        Some(async move {
            let (result, seen) = answer_of(provider, aside, attempt.await).await;
            (result.map(answered), seen)
        })
    })
    .await
    .map(Answered::into_inner)
    .map_err(|e| transport.redact_credential(e))
}

/// Sends a hand-written request (one progenitor cannot express) through the same hooks and
/// attempts as the generated calls. An answer whose status `accept` takes comes back with its
/// body, read within the attempt (so under its timer and read limit), for the caller to decode;
/// others become errors, retried where the policy says.
pub(crate) async fn send<C, E, F>(
    client: &C,
    call: Call<'_>,
    accept: fn(StatusCode) -> bool,
    mut make: F,
) -> Result<(StatusCode, bytes::Bytes), Error>
where
    C: progenitor_client::ClientHooks<Transport> + progenitor_client::ClientInfo<Transport>,
    E: ErrorBody,
    F: FnMut() -> Option<Result<reqwest::Request, Error>>,
{
    let (provider, operation_id, aside) = (call.provider, call.operation, call.aside);
    attempts(client.inner(), call, || {
        let request = make()?;
        Some(async move {
            let mut request = match request {
                Ok(request) => request,
                Err(error) => return (Err(error), None),
            };
            let info = progenitor_client::OperationInfo { operation_id };
            let hooks = async {
                client.pre::<()>(&mut request, &info).await?;
                Ok::<_, progenitor_client::Error<()>>(client.exec(request, &info).await?)
            };
            let response = match hooks.await {
                Ok(response) => response,
                Err(e) => {
                    let error = match e {
                        progenitor_client::Error::CommunicationError(e) => {
                            from_reqwest(provider, e)
                        }
                        progenitor_client::Error::InvalidRequest(reason) => invalid_request(reason),
                        other => {
                            Error::transport(provider, "a request hook failed", other.to_string())
                        }
                    };
                    return (Err(error), None);
                }
            };
            let status = response.status();
            if !aside {
                observed::note(provider, status, response.headers());
            }
            let seen = Some((status, kept_headers(response.headers())));
            let result = match response.bytes().await {
                Err(e) => Err(from_reqwest(provider, e)),
                Ok(body) if accept(status) => Ok((status, body)),
                Ok(body) => Err(from_undecoded_body::<E>(provider, status, &body, None)),
            };
            (result, seen)
        })
    })
    .await
    .map_err(|e| client.inner().redact_credential(e))
}

/// The attempt loop: the one place requests are sent, retried, sent again (see [`Answered`]), timed
/// and traced.
async fn attempts<T, F, Fut>(transport: &Transport, call: Call<'_>, mut make: F) -> Result<T, Error>
where
    T: LeavesRest,
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = (Result<T, Error>, Seen)>,
{
    let policy = &transport.shared.policy;
    let retry = call.retry.unwrap_or(&policy.retry);
    let started = tokio::time::Instant::now();
    let mut attempt = 0u32;
    let mut last_error: Option<Error> = None;
    loop {
        attempt += 1;
        let Some(future) = make() else {
            let error = last_error
                .unwrap_or_else(|| Error::bad_response(call.provider, None, "no request to send"));
            return Err(
                error.with_note("the request body was streamed, so it could not be replayed")
            );
        };
        if let Some(limiter) = &transport.shared.limiter {
            let (method, _) = template(call.operations, call.operation);
            let asked_at = tokio::time::Instant::now();
            limiter.acquire(method).await;
            observed::waited_for_budget(asked_at.elapsed());
        }
        observed::count_request();
        // Nothing listens below INFO (or at all): no span to build, enter or fill.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::info_span!(
                "edgekv.request",
                provider = %call.provider,
                operation = call.operation,
                method = tracing::field::Empty,
                path = tracing::field::Empty,
                attempt,
                status = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
                request_id = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let traced = !span.is_disabled();
        if traced {
            let (method, path) = template(call.operations, call.operation);
            span.record("method", method);
            span.record("path", path);
        }
        // The first attempt starts with the call unless it waited for the client-side limit
        // (one clock read fewer per call).
        let attempt_started = if attempt == 1 && transport.shared.limiter.is_none() {
            started
        } else {
            tokio::time::Instant::now()
        };
        // One timer per attempt: the attempt's own limit or the call's deadline, the sooner.
        let attempt_end = attempt_started
            .checked_add(policy.timeouts.attempt)
            .map(|end| (end, "the attempt timeout", attempt_started));
        let call_end = retry
            .deadline
            .and_then(|d| started.checked_add(d))
            .map(|end| (end, "the call's deadline", started));
        let timer = match (attempt_end, call_end) {
            (Some(a), Some(c)) => Some(if c.0 < a.0 { c } else { a }),
            (a, c) => a.or(c),
        };
        // Boxed here, the attempt is not copied again by each wrapper around it (a generated
        // call's own future is boxed where it is made, in `call`).
        let future = Box::pin(future);
        let timed = async move {
            match timer {
                Some((end, _, _)) => tokio::time::timeout_at(end, future).await.ok(),
                None => Some(future.await),
            }
        };
        let outcome = if traced {
            timed.instrument(span.clone()).await
        } else {
            timed.await
        };
        let (result, answer) = outcome.unwrap_or_else(|| {
            let (end, what, from) = timer.expect("only a timer ends an attempt without an outcome");
            let after = end.saturating_duration_since(from);
            let error = Error::transport(call.provider, "timed out", TimedOut { what, after });
            (Err(error), None)
        });
        let kept = answer.as_ref().and_then(|(_, kept)| kept.as_deref());
        let rate_limit = kept.and_then(RateLimit::from_headers);
        if let Some(rate_limit) = &rate_limit
            && let Ok(mut latest) = transport.shared.rate_limit.lock()
        {
            *latest = Some(rate_limit.clone());
        }
        if traced {
            trace_attempt(
                &span,
                answer.as_ref().map(|(status, _)| *status),
                kept,
                attempt_started.elapsed(),
                result.as_ref().err(),
            );
        }

        // Whether another attempt may start after `wait`: attempts and the deadline left.
        let another_after = |wait: Duration| {
            attempt < retry.max_attempts
                && retry.deadline.is_none_or(|deadline| {
                    started
                        .elapsed()
                        .checked_add(wait)
                        .is_some_and(|at| at < deadline)
                })
        };
        let error = match result {
            // Only an idempotent call is sent again for what its answer left undone.
            Ok(value) => match value.send_again_after() {
                None => return Ok(value),
                Some(_) if call.idempotency != Idempotency::Idempotent => return Ok(value),
                Some(at_least) => {
                    let wait = retry.backoff(attempt + 1).max(at_least);
                    if !another_after(wait) {
                        return Ok(value);
                    }
                    tokio::time::sleep(wait).await;
                    last_error = None;
                    continue;
                }
            },
            Err(error) => error.with_call(CallInfo {
                attempts: attempt,
                rate_limit,
                request_id: kept.and_then(request_id),
                ..CallInfo::default()
            }),
        };
        let asked = kept.and_then(policy::retry_after);
        // The caller learns the wait the service asked for whenever the call ends without it.
        let end = |error: Error| match asked {
            Some(wait) => error.with_retry_after(wait),
            None => error,
        };
        if !should_retry(&error, call.idempotency, retry) || attempt >= retry.max_attempts {
            return Err(end(error));
        }
        if asked.is_some_and(|wait| wait > retry.max_retry_after) {
            return Err(end(error));
        }
        let wait = asked.unwrap_or_else(|| retry.backoff(attempt + 1));
        if !another_after(wait) {
            return Err(
                end(error).with_note("the retry deadline would pass before the next attempt")
            );
        }
        if error.is_rate_limited() {
            observed::waited_for_budget(wait);
        }
        tokio::time::sleep(wait).await;
        last_error = Some(error);
    }
}

/// Whether an error is worth another attempt: a failure to connect always (the request never
/// left); other transport failures and retryable statuses when sending twice is safe.
fn should_retry(error: &Error, idempotency: Idempotency, retry: &RetryPolicy) -> bool {
    let twice_is_safe = idempotency == Idempotency::Idempotent || retry.retry_non_idempotent;
    match error {
        Error::Transport(e) => e.never_sent || (twice_is_safe && e.retryable),
        Error::Api(e) => twice_is_safe && policy::is_retryable_status(e.status),
        Error::InvalidInput(_) | Error::BadResponse(_) | Error::Caller(_) => false,
    }
}

fn trace_attempt(
    span: &tracing::Span,
    status: Option<StatusCode>,
    kept: Option<&HeaderMap>,
    latency: Duration,
    error: Option<&Error>,
) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    span.record("latency_ms", latency_ms);
    if let Some(status) = status {
        span.record("status", status.as_u16());
    }
    if let Some(id) = kept.and_then(request_id) {
        span.record("request_id", id);
    }
    // Statuses and codes only: an error's text can quote the service, which may echo a key.
    span.in_scope(|| match error {
        None => tracing::debug!(latency_ms, "answered"),
        Some(error) => {
            let stage = match error {
                Error::InvalidInput(_) => "invalid input",
                Error::Transport(e) => e.what,
                Error::Api(_) => "api error",
                Error::BadResponse(_) => "bad response",
                Error::Caller(_) => "the caller's stream",
            };
            tracing::info!(latency_ms, stage, codes = ?error.codes(), "failed");
        }
    });
}

/// The method and path template of an operation, for logs (never the key itself).
fn template(
    operations: &[(&str, &'static str, &'static str)],
    operation: &str,
) -> (&'static str, &'static str) {
    operations
        .iter()
        .find(|(id, ..)| *id == operation)
        .map(|(_, method, path)| (*method, *path))
        .unwrap_or(("?", "?"))
}
