//! The one place every request of both providers passes through.
//!
//! Each generated client carries a [`Seam`] (progenitor's "inner" value): the credential and the
//! [`RequestPolicy`]. Its `ClientHooks` route here: `pre` adds the credential as sensitive header
//! values, per request, rather than as default headers of the `reqwest::Client` (reqwest drops
//! `Authorization` on a cross-host redirect but would forward a custom header like `Fastly-Key`);
//! `post` records each answer's status and headers. The facades run every call, generated or
//! hand-written, through `call` or `send`, which make the attempts: retries, the
//! response-header timeout, the client-side limit, rate-limit state and a tracing span each.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument as _;

use crate::error::{ApiError, ApiMessage, CallInfo, Error, InvalidInput, Provider, excerpt};
use crate::policy::{self, Budget, Limiter, RateLimit, RequestPolicy, RetryPolicy, Safety};

/// The header progenitor adds to every request with the spec's version; neither API uses it.
const API_VERSION_HEADER: HeaderName = HeaderName::from_static("api-version");

/// A credential for one of the two APIs. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A Fastly API token, sent as `Fastly-Key`.
    FastlyToken(String),
    /// A Cloudflare API token, sent as `Authorization: Bearer <token>`.
    CloudflareToken(String),
    /// Cloudflare's older account email and global API key, sent as `X-Auth-Email` and
    /// `X-Auth-Key`.
    CloudflareGlobalKey {
        /// The account's email address.
        email: String,
        /// The global API key.
        key: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::FastlyToken(_) => f.write_str("FastlyToken(<redacted>)"),
            Credential::CloudflareToken(_) => f.write_str("CloudflareToken(<redacted>)"),
            Credential::CloudflareGlobalKey { .. } => {
                f.write_str("CloudflareGlobalKey { email: <redacted>, key: <redacted> }")
            }
        }
    }
}

impl Credential {
    /// The headers that carry this credential, marked sensitive (kept out of logs and HPACK
    /// tables).
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidInput> {
        let sensitive = |header: &'static str, value: &str| {
            let mut value =
                HeaderValue::from_str(value).map_err(|_| InvalidInput::Credential { header })?;
            value.set_sensitive(true);
            Ok::<_, InvalidInput>(value)
        };
        Ok(match self {
            Credential::FastlyToken(token) => {
                vec![(
                    HeaderName::from_static("fastly-key"),
                    sensitive("Fastly-Key", token)?,
                )]
            }
            Credential::CloudflareToken(token) => {
                vec![(
                    AUTHORIZATION,
                    sensitive("Authorization", &format!("Bearer {token}"))?,
                )]
            }
            Credential::CloudflareGlobalKey { email, key } => vec![
                (
                    HeaderName::from_static("x-auth-email"),
                    sensitive("X-Auth-Email", email)?,
                ),
                (
                    HeaderName::from_static("x-auth-key"),
                    sensitive("X-Auth-Key", key)?,
                ),
            ],
        })
    }
}

/// What a generated client applies to each request: the credential and the request policy.
/// Cheap to clone; clones share the rate-limit state and the client-side limit.
#[derive(Clone)]
pub struct Seam {
    credential_headers: Arc<[(HeaderName, HeaderValue)]>,
    shared: Arc<Shared>,
}

struct Shared {
    policy: RequestPolicy,
    limiter: Option<Limiter>,
    rate_limit: Mutex<Option<RateLimit>>,
    /// The per-attempt timer for the response headers; `None` when the `reqwest::Client`'s own
    /// read timeout already ends the wait as soon.
    header_timer: Option<Duration>,
}

impl Shared {
    fn new(policy: RequestPolicy, client_read_timeout: Option<Duration>) -> Arc<Self> {
        let limiter = policy.client_limit.map(Limiter::new);
        let headers = policy.timeouts.response_headers;
        Arc::new(Shared {
            header_timer: match client_read_timeout {
                Some(read) if read <= headers => None,
                _ => Some(headers),
            },
            policy,
            limiter,
            rate_limit: Mutex::new(None),
        })
    }
}

impl fmt::Debug for Seam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .credential_headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("Seam")
            .field("credential_headers", &names)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl Seam {
    /// A seam that authenticates every request with `credential`, under the default
    /// [`RequestPolicy`]. Fails if the credential cannot be sent as a header value.
    pub fn new(credential: Credential) -> Result<Self, InvalidInput> {
        crate::http::install_crypto_provider();
        Ok(Seam {
            credential_headers: credential.headers()?.into(),
            shared: Shared::new(RequestPolicy::default(), None),
        })
    }

    /// A seam that sends no credential (for servers that need none, such as a local mock).
    pub fn anonymous() -> Self {
        crate::http::install_crypto_provider();
        Seam {
            credential_headers: Arc::new([]),
            shared: Shared::new(RequestPolicy::default(), None),
        }
    }

    /// The same credential under another policy.
    pub fn with_policy(self, policy: RequestPolicy) -> Self {
        Seam {
            credential_headers: self.credential_headers,
            shared: Shared::new(policy, None),
        }
    }

    /// The same seam, told that its `reqwest::Client` was built with the policy's idle-read
    /// timeout ([`crate::http::client_builder_with`]). reqwest runs that timer from the moment a
    /// request is sent, so it bounds the wait for the response headers too; the seam then arms
    /// its own per-attempt timer only when `response_headers` is shorter, sparing each call a
    /// second timer.
    pub(crate) fn with_client_read_timeout(self) -> Self {
        let policy = self.shared.policy.clone();
        let read = policy.timeouts.idle_read;
        Seam {
            credential_headers: self.credential_headers,
            shared: Shared::new(policy, Some(read)),
        }
    }

    /// The policy requests are sent under.
    pub fn policy(&self) -> &RequestPolicy {
        &self.shared.policy
    }

    /// What the service said about its rate limit on the latest answer that told.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.shared
            .rate_limit
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Prepares an outgoing request: drops progenitor's `api-version` header and adds the
    /// credential.
    pub(crate) fn prepare(&self, request: &mut reqwest::Request) {
        let headers = request.headers_mut();
        headers.remove(&API_VERSION_HEADER);
        for (name, value) in self.credential_headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The seam and `reqwest::Client` a facade's builder ends with: the caller's own client as it
/// is, or one built with the policy's timeouts, whose read timer the seam then relies on.
pub(crate) fn with_http_client(
    seam: Seam,
    http: Option<reqwest::Client>,
    provider: Provider,
) -> Result<(Seam, reqwest::Client), Error> {
    match http {
        Some(http) => Ok((seam, http)),
        None => {
            let http = crate::http::client_builder_with(&seam.policy().timeouts)
                .build()
                .map_err(|e| Error::transport(provider, "building the HTTP client failed", e))?;
            Ok((seam.with_client_read_timeout(), http))
        }
    }
}

tokio::task_local! {
    /// The status and headers of the answer to the current attempt.
    static OBSERVED: RefCell<Option<(StatusCode, HeaderMap)>>;
}

/// Runs one attempt, keeping the status and headers it was answered with: progenitor drops them
/// when a body does not decode, and retries need `Retry-After`.
async fn observe<T>(attempt: impl Future<Output = T>) -> (T, Option<(StatusCode, HeaderMap)>) {
    OBSERVED
        .scope(RefCell::new(None), async move {
            let out = attempt.await;
            (out, OBSERVED.with(|o| o.borrow_mut().take()))
        })
        .await
}

/// The answer headers the attempt loop reads: waits, rate limits, request ids.
const KEPT_HEADERS: [&str; 12] = [
    "retry-after",
    "retry-after-ms",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "fastly-ratelimit-remaining",
    "fastly-ratelimit-reset",
    "cf-ray",
    "x-request-id",
    "fastly-request-id",
];

fn record_answer(result: &reqwest::Result<reqwest::Response>) {
    if let Ok(response) = result {
        // Only the headers the loop reads, found in one pass over the answer's few headers:
        // cloning the whole map, or a lookup per name, costs every call more than the rest of
        // the seam.
        let mut kept = HeaderMap::new();
        for (name, value) in response.headers() {
            if KEPT_HEADERS.contains(&name.as_str()) {
                kept.append(name.clone(), value.clone());
            }
        }
        // Outside an attempt (a raw client used directly) there is nothing to record.
        let _ = OBSERVED.try_with(|o| *o.borrow_mut() = Some((response.status(), kept)));
    }
}

/// Routes a generated client's hooks to its [`Seam`].
macro_rules! hooks_through_seam {
    ($client:ty) => {
        impl progenitor_client::ClientHooks<Seam> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                use progenitor_client::ClientInfo as _;
                self.inner().prepare(request);
                Ok(())
            }

            async fn post<E>(
                &self,
                result: &reqwest::Result<reqwest::Response>,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                record_answer(result);
                Ok(())
            }
        }
    };
}

hooks_through_seam!(crate::fastly::raw::Client);
hooks_through_seam!(crate::cloudflare::raw::Client);

/// How a provider's error body becomes an [`ApiError`].
pub(crate) trait ErrorBody {
    /// The typed body progenitor decoded.
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>);
    /// A body progenitor did not decode (an unlisted status), if it has the provider's shape.
    fn decode(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)>;
}

impl ErrorBody for () {
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>) {
        (Vec::new(), Vec::new())
    }
    fn decode(_: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        None
    }
}

/// One facade call: what it is, for retries and logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    pub(crate) provider: Provider,
    pub(crate) operation: &'static str,
    pub(crate) safety: Safety,
    /// A per-call (per-handle) retry policy overriding the client's.
    pub(crate) retry: Option<&'a RetryPolicy>,
    /// Attempts shared with other calls (a bulk chunk's), replacing the policy's own count and
    /// deadline.
    pub(crate) budget: Option<&'a Budget>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(provider: Provider, operation: &'static str) -> Self {
        Call {
            provider,
            operation,
            safety: Safety::Idempotent,
            retry: None,
            budget: None,
        }
    }

    /// Marks a call a lost answer could make wrong when `is_unsafe`.
    pub(crate) fn unsafe_if(mut self, is_unsafe: bool) -> Self {
        if is_unsafe {
            self.safety = Safety::Unsafe;
        }
        self
    }

    pub(crate) fn retry(mut self, retry: Option<&'a RetryPolicy>) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn budget(mut self, budget: &'a Budget) -> Self {
        self.budget = Some(budget);
        self
    }
}

/// Runs a generated call: `make` builds each attempt, `None` when the request cannot be built
/// again (its streamed body is spent). Progenitor's error becomes the crate's here, the one place
/// for both providers.
pub(crate) async fn call<T, E, F, Fut>(
    seam: &Seam,
    call: Call<'_>,
    mut make: F,
) -> Result<progenitor_client::ResponseValue<T>, Error>
where
    E: ErrorBody,
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<E>>>,
{
    let provider = call.provider;
    attempts(seam, call, || {
        let attempt = make()?;
        Some(async move {
            match attempt.await {
                Ok(value) => Ok(value),
                Err(error) => {
                    let status = OBSERVED
                        .try_with(|o| o.borrow().as_ref().map(|(s, _)| *s))
                        .ok()
                        .flatten();
                    Err(convert(provider, error, status).await)
                }
            }
        })
    })
    .await
}

/// Sends a hand-written request (one progenitor cannot express) through the same hooks and
/// attempts as the generated calls. An answer whose status `accept` takes comes back as it is
/// (for the caller to decode); others become errors, retried where the policy says.
pub(crate) async fn send<C, E, F>(
    client: &C,
    call: Call<'_>,
    accept: fn(StatusCode) -> bool,
    mut make: F,
) -> Result<reqwest::Response, Error>
where
    C: progenitor_client::ClientHooks<Seam> + progenitor_client::ClientInfo<Seam>,
    E: ErrorBody,
    F: FnMut() -> Option<Result<reqwest::Request, Error>>,
{
    let (provider, operation_id) = (call.provider, call.operation);
    attempts(client.inner(), call, || {
        let request = make()?;
        Some(async move {
            let mut request = request?;
            let info = progenitor_client::OperationInfo { operation_id };
            let hooks = async {
                client.pre::<()>(&mut request, &info).await?;
                let result = client.exec(request, &info).await;
                client.post::<()>(&result, &info).await?;
                Ok::<_, progenitor_client::Error<()>>(result?)
            };
            let response = hooks.await.map_err(|e| match e {
                progenitor_client::Error::CommunicationError(e) => transport(provider, e),
                other => Error::transport(provider, "a request hook failed", other.to_string()),
            })?;
            let status = response.status();
            if accept(status) {
                return Ok(response);
            }
            let body = response.bytes().await.map_err(|e| transport(provider, e))?;
            Err(from_undecoded_body::<E>(provider, status, &body, None))
        })
    })
    .await
}

/// The attempt loop: the one place requests are retried, timed and traced.
async fn attempts<T, F, Fut>(seam: &Seam, call: Call<'_>, mut make: F) -> Result<T, Error>
where
    F: FnMut() -> Option<Fut>,
    Fut: Future<Output = Result<T, Error>>,
{
    let policy = &seam.shared.policy;
    let retry = call.retry.unwrap_or(&policy.retry);
    let started = tokio::time::Instant::now();
    let (method, path) = template(call.provider, call.operation);
    let mut attempt = 0u32;
    let mut last_error: Option<Error> = None;
    loop {
        attempt += 1;
        if let Some(budget) = call.budget
            && !budget.take()
        {
            let error = last_error.unwrap_or_else(|| {
                Error::bad_response(call.provider, None, "no attempt left to send")
            });
            return Err(error.with_note("the retry budget of the bulk chunk is spent"));
        }
        let Some(future) = make() else {
            let error = last_error
                .unwrap_or_else(|| Error::bad_response(call.provider, None, "no request to send"));
            return Err(
                error.with_note("the request body was streamed, so it could not be replayed")
            );
        };
        if let Some(limiter) = &seam.shared.limiter {
            limiter.acquire().await;
        }
        let span = tracing::info_span!(
            "edgekv.request",
            provider = %call.provider,
            operation = call.operation,
            method,
            path,
            attempt,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        let attempt_started = tokio::time::Instant::now();
        // Boxed once here, the attempt is not copied again by each wrapper around it.
        let future = Box::pin(future);
        let header_timer = seam.shared.header_timer;
        let timed = async move {
            match header_timer {
                Some(limit) => tokio::time::timeout(limit, future).await.ok(),
                None => Some(future.await),
            }
        };
        let (outcome, answer) = observe(timed).instrument(span.clone()).await;
        let result = outcome.unwrap_or_else(|| {
            Err(Error::transport(
                call.provider,
                "no response headers in time",
                TimedOut(policy.timeouts.response_headers),
            ))
        });
        let rate_limit = answer
            .as_ref()
            .filter(|(_, headers)| !headers.is_empty())
            .and_then(|(_, headers)| RateLimit::from_headers(headers));
        if let Some(rate_limit) = &rate_limit
            && let Ok(mut latest) = seam.shared.rate_limit.lock()
        {
            *latest = Some(rate_limit.clone());
        }
        // Nothing listens when the span is disabled: skip the fields and events.
        if !span.is_disabled() {
            trace_attempt(
                &span,
                answer.as_ref(),
                attempt_started.elapsed(),
                result.as_ref().err(),
            );
        }

        let error = match result {
            Ok(value) => return Ok(value),
            Err(error) => error.with_call(CallInfo {
                attempts: attempt,
                rate_limit,
                ..CallInfo::default()
            }),
        };
        let asked = answer
            .as_ref()
            .and_then(|(_, headers)| policy::retry_after(headers));
        // The caller learns the wait the service asked for whenever the call ends without it.
        let end = |error: Error| match asked {
            Some(wait) => error.with_retry_after(wait),
            None => error,
        };
        let attempts_left = match call.budget {
            Some(budget) => budget.allows(Duration::ZERO),
            None => attempt < retry.max_attempts,
        };
        if !should_retry(&error, call.safety, retry) || !attempts_left {
            return Err(end(error));
        }
        if asked.is_some_and(|wait| wait > retry.max_retry_after) {
            return Err(end(error));
        }
        let wait = asked.unwrap_or_else(|| retry.backoff(attempt + 1));
        let past_deadline = match call.budget {
            Some(budget) => !budget.allows(wait),
            None => retry
                .deadline
                .is_some_and(|deadline| started.elapsed() + wait >= deadline),
        };
        if past_deadline {
            return Err(error.with_note("the retry deadline would pass before the next attempt"));
        }
        tokio::time::sleep(wait).await;
        last_error = Some(error);
    }
}

/// Whether an error is worth another attempt: a failure to connect always (the request never
/// left); other transport failures and retryable statuses when sending twice is safe.
fn should_retry(error: &Error, safety: Safety, retry: &RetryPolicy) -> bool {
    let twice_is_safe = safety == Safety::Idempotent || retry.retry_unsafe;
    match error {
        Error::Transport(e) => e.never_sent || (twice_is_safe && e.retryable),
        Error::Api(e) => twice_is_safe && policy::is_retryable_status(e.status),
        Error::InvalidInput(_) | Error::BadResponse(_) => false,
    }
}

fn trace_attempt(
    span: &tracing::Span,
    answer: Option<&(StatusCode, HeaderMap)>,
    latency: Duration,
    error: Option<&Error>,
) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    span.record("latency_ms", latency_ms);
    if let Some((status, headers)) = answer {
        span.record("status", status.as_u16());
        let id = ["cf-ray", "x-request-id", "fastly-request-id"]
            .iter()
            .filter(|_| !headers.is_empty())
            .find_map(|name| headers.get(*name));
        if let Some(id) = id.and_then(|v| v.to_str().ok()) {
            span.record("request_id", id);
        }
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
            };
            tracing::info!(latency_ms, stage, codes = ?error.codes(), "failed");
        }
    });
}

/// The method and path template of an operation, for logs (never the key itself).
fn template(provider: Provider, operation: &str) -> (&'static str, &'static str) {
    let table = match provider {
        Provider::Fastly => crate::fastly::raw::OPERATIONS,
        Provider::Cloudflare => crate::cloudflare::raw::OPERATIONS,
    };
    table
        .iter()
        .find(|(id, ..)| *id == operation)
        .map(|(_, method, path)| (*method, *path))
        .unwrap_or(("?", "?"))
}

/// The response headers did not arrive within the timeout.
#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

fn transport(provider: Provider, error: reqwest::Error) -> Error {
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "the request could not be sent or answered"
    };
    Error::transport(provider, what, error)
}

async fn convert<E: ErrorBody>(
    provider: Provider,
    error: progenitor_client::Error<E>,
    status: Option<StatusCode>,
) -> Error {
    use progenitor_client::Error as P;
    match error {
        P::ErrorResponse(response) => {
            let status = response.status();
            let (errors, messages) = response.into_inner().into_messages();
            Error::Api(ApiError::new(provider, status, errors, messages, None))
        }
        P::UnexpectedResponse(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(body) => from_undecoded_body::<E>(provider, status, &body, None),
                Err(e) => transport(provider, e),
            }
        }
        P::InvalidResponsePayload(body, e) => match status {
            Some(status) => from_undecoded_body::<E>(provider, status, &body, Some(Box::new(e))),
            None => Error::BadResponse(crate::error::BadResponse::new(
                provider,
                None,
                format!("the body is not the expected JSON: {e}"),
                excerpt(&body),
                Some(Box::new(e)),
            )),
        },
        P::CommunicationError(e) | P::InvalidUpgrade(e) | P::ResponseBodyError(e) => {
            transport(provider, e)
        }
        P::InvalidRequest(reason) => Error::InvalidInput(InvalidInput::Unbuildable { reason }),
        P::Custom(reason) => Error::transport(provider, "a request hook failed", reason),
    }
}

/// An answer whose body progenitor did not decode: an API error if the status says so (with
/// the provider's codes if the body has its shape, else an excerpt), a bad response otherwise.
pub(crate) fn from_undecoded_body<E: ErrorBody>(
    provider: Provider,
    status: StatusCode,
    body: &[u8],
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    if status.is_client_error() || status.is_server_error() {
        let error = match E::decode(body) {
            Some((errors, messages)) => ApiError::new(provider, status, errors, messages, None),
            None => ApiError::new(provider, status, Vec::new(), Vec::new(), excerpt(body)),
        };
        return Error::Api(error);
    }
    let reason = match &source {
        Some(e) => format!("the body is not the expected JSON: {e}"),
        None => "a status the API does not document for this call".to_string(),
    };
    Error::BadResponse(crate::error::BadResponse::new(
        provider,
        Some(status),
        reason,
        excerpt(body),
        source,
    ))
}

/// Reads a hand-written call's 2xx answer as JSON `T`.
pub(crate) async fn decode_json<T: serde::de::DeserializeOwned>(
    provider: Provider,
    response: reqwest::Response,
) -> Result<(StatusCode, T), Error> {
    let status = response.status();
    let body = response.bytes().await.map_err(|e| transport(provider, e))?;
    match serde_json::from_slice(&body) {
        Ok(value) => Ok((status, value)),
        Err(e) => Err(from_undecoded_body::<()>(
            provider,
            status,
            &body,
            Some(Box::new(e)),
        )),
    }
}
