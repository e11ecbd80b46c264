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

use crate::error::TimedOut;
use crate::error::{ApiError, ApiMessage, CallInfo, Error, InvalidInput, Provider, excerpt};
use crate::policy::{self, Budget, Limiter, RateLimit, RequestPolicy, RetryPolicy, Safety};
use crate::transport::capped::{AnswerTooLarge, find};
use crate::transport::segment;

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
    /// The secret parts, as they could be echoed.
    fn secrets(&self) -> Vec<String> {
        match self {
            Credential::FastlyToken(token) | Credential::CloudflareToken(token) => {
                vec![token.clone()]
            }
            Credential::CloudflareGlobalKey { email, key } => vec![email.clone(), key.clone()],
        }
    }

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
    /// The credential's secrets, to redact from errors should a server echo them.
    credential_secrets: Arc<[String]>,
    shared: Arc<Shared>,
}

struct Shared {
    policy: RequestPolicy,
    limiter: Option<Limiter>,
    rate_limit: Mutex<Option<RateLimit>>,
}

impl Shared {
    fn new(policy: RequestPolicy) -> Arc<Self> {
        let limiter = policy.client_limit.map(Limiter::new);
        Arc::new(Shared {
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
            credential_secrets: credential.secrets().into(),
            shared: Shared::new(RequestPolicy::default()),
        })
    }

    /// A seam that sends no credential (for servers that need none, such as a local mock).
    pub fn anonymous() -> Self {
        crate::http::install_crypto_provider();
        Seam {
            credential_headers: Arc::new([]),
            credential_secrets: Arc::new([]),
            shared: Shared::new(RequestPolicy::default()),
        }
    }

    /// The same credential under another policy.
    pub fn with_policy(self, policy: RequestPolicy) -> Self {
        Seam {
            credential_headers: self.credential_headers,
            credential_secrets: self.credential_secrets,
            shared: Shared::new(policy),
        }
    }

    /// `error` without the credential in anything a server said.
    pub(crate) fn redact_credential(&self, error: Error) -> Error {
        let secrets = self
            .credential_secrets
            .iter()
            .fold(crate::error::Secrets::new(), |secrets, secret| {
                secrets.with(secret.as_bytes(), "<credential>")
            });
        error.redact(&secrets)
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
            Ok((seam, http))
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

pub(crate) fn record_answer(result: &reqwest::Result<reqwest::Response>) {
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

/// Routes a generated client's hooks to its [`Seam`]: `pre` checks that the request's path is
/// its operation's template and adds the credential, `exec` puts the operation's read limit on
/// the answer, `post` records the answer's status and headers. Invoked by each provider's
/// `raw.rs` with its operation table and what each operation answers.
macro_rules! hooks_through_seam {
    ($client:ty, $operations:expr, $answer:path) => {
        impl progenitor_client::ClientHooks<$crate::seam::Seam> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                use progenitor_client::ClientInfo as _;
                $crate::seam::check_request(request, self.baseurl(), $operations, info).map_err(
                    |reason| progenitor_client::Error::InvalidRequest(reason.to_string()),
                )?;
                self.inner().prepare(request);
                Ok(())
            }

            async fn exec(
                &self,
                request: reqwest::Request,
                info: &progenitor_client::OperationInfo,
            ) -> reqwest::Result<reqwest::Response> {
                use progenitor_client::ClientInfo as _;
                let response = self.client().execute(request).await?;
                let limits = &self.inner().policy().read_limits;
                let answer = $answer(info.operation_id);
                Ok($crate::transport::capped::limit(response, answer, limits))
            }

            async fn post<E>(
                &self,
                result: &reqwest::Result<reqwest::Response>,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                $crate::seam::record_answer(result);
                Ok(())
            }
        }
    };
}
pub(crate) use hooks_through_seam;

/// Refuses a request whose parsed path is not its operation's template with one segment per
/// parameter (see [`crate::transport::segment::check_path`]); nothing is sent.
pub(crate) fn check_request(
    request: &reqwest::Request,
    base_url: &str,
    operations: &[(&str, &str, &str)],
    info: &progenitor_client::OperationInfo,
) -> Result<(), &'static str> {
    let template = operations
        .iter()
        .find(|(id, ..)| *id == info.operation_id)
        .map(|(_, _, path)| *path)
        .ok_or("an operation outside the spec")?;
    let url = request.url();
    if url.fragment().is_some() {
        return Err(segment::REFUSED);
    }
    segment::check_path(url.path(), base_url, template)
}

/// How a provider's error body becomes an [`ApiError`].
pub(crate) trait ErrorBody {
    /// The typed body progenitor decoded.
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>);
    /// A body progenitor did not decode (an unlisted status), if it has the provider's shape.
    fn decode(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)>;
    /// A 2xx body that did not decode as the success type but says the call failed (Cloudflare:
    /// `success: false` with `result: null`).
    fn unsuccessful(_body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        None
    }
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
    /// The provider's operation table (`raw::OPERATIONS`), where logs find the method and path
    /// template: the provider registers it, the core names no provider.
    pub(crate) operations: &'static [(&'static str, &'static str, &'static str)],
    pub(crate) safety: Safety,
    /// A per-call (per-handle) retry policy overriding the client's.
    pub(crate) retry: Option<&'a RetryPolicy>,
    /// Attempts shared with other calls (a bulk chunk's), replacing the policy's own count and
    /// deadline.
    pub(crate) budget: Option<&'a Budget>,
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
    .map_err(|e| seam.redact_credential(e))
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
                progenitor_client::Error::InvalidRequest(reason) => invalid_request(reason),
                other => Error::transport(provider, "a request hook failed", other.to_string()),
            })?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| transport(provider, e))?;
            if accept(status) {
                return Ok((status, body));
            }
            Err(from_undecoded_body::<E>(provider, status, &body, None))
        })
    })
    .await
    .map_err(|e| client.inner().redact_credential(e))
}

/// A request the pre-send check refused: one of its path parameters cannot be a segment.
fn invalid_request(reason: String) -> Error {
    if reason == segment::REFUSED {
        Error::InvalidInput(InvalidInput::UnaddressableId)
    } else {
        Error::InvalidInput(InvalidInput::Unbuildable { reason })
    }
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
    let (method, path) = template(call.operations, call.operation);
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
        // One timer per attempt: the attempt's own limit or the call's deadline, the sooner.
        let attempt_end = attempt_started
            .checked_add(policy.timeouts.attempt)
            .map(|end| (end, "the attempt timeout", policy.timeouts.attempt));
        let call_end = match call.budget {
            Some(budget) => budget.deadline(),
            None => retry.deadline.and_then(|d| started.checked_add(d)),
        }
        .map(|end| {
            (
                end,
                "the call's deadline",
                end.saturating_duration_since(started),
            )
        });
        let timer = match (attempt_end, call_end) {
            (Some(a), Some(c)) => Some(if c.0 < a.0 { c } else { a }),
            (a, c) => a.or(c),
        };
        // Boxed once here, the attempt is not copied again by each wrapper around it.
        let future = Box::pin(future);
        let timed = async move {
            match timer {
                Some((end, _, _)) => tokio::time::timeout_at(end, future).await.ok(),
                None => Some(future.await),
            }
        };
        let (outcome, answer) = observe(timed).instrument(span.clone()).await;
        let result = outcome.unwrap_or_else(|| {
            let (_, what, after) = timer.expect("only a timer ends an attempt without an outcome");
            Err(Error::transport(
                call.provider,
                "timed out",
                TimedOut { what, after },
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
            None => retry.deadline.is_some_and(|deadline| {
                started
                    .elapsed()
                    .checked_add(wait)
                    .is_none_or(|at| at >= deadline)
            }),
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

fn transport(provider: Provider, error: reqwest::Error) -> Error {
    if let Some(too_large) = find::<AnswerTooLarge>(&error) {
        return Error::answer_too_large(provider, too_large.limit, too_large.setting);
    }
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
        P::InvalidRequest(reason) => invalid_request(reason),
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
    if let Some((errors, messages)) = E::unsuccessful(body) {
        return Error::Api(ApiError::new(provider, status, errors, messages, None));
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

/// Decodes a hand-written call's answer (see [`send`]) as JSON `T`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    provider: Provider,
    status: StatusCode,
    body: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| from_undecoded_body::<()>(provider, status, body, Some(Box::new(e))))
}
