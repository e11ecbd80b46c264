//! The crate's one error type, shared by both providers.
//!
//! Each variant names the stage that failed: the input was refused before sending, the transport
//! failed, the service answered with an error, or its answer could not be understood. `Display`
//! is one short sentence; the cause is reachable through [`std::error::Error::source`].

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use crate::bulk::BulkReport;
use crate::policy::RateLimit;

/// Which service a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// The Fastly KV Store API.
    Fastly,
    /// The Cloudflare Workers KV API.
    Cloudflare,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Fastly => "Fastly",
            Provider::Cloudflare => "Cloudflare",
        })
    }
}

/// Why a call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The input was refused locally; no request was sent.
    InvalidInput(InvalidInput),
    /// The request did not complete (connecting, sending or receiving failed). It may or may not
    /// have reached the service.
    Transport(TransportError),
    /// The service answered with an error.
    Api(ApiError),
    /// The service answered, but not in a form the client understands.
    BadResponse(BadResponse),
    /// An error outside the service, which is `source()`: the caller's own, from the stream
    /// of entries or keys handed to a bulk call (made with [`Error::from_caller`]; the call
    /// stopped reading there, and what it did before is in
    /// [`partial_report`](Error::partial_report)), or a job's journal that could not be
    /// written.
    Caller(CallerError),
}

impl Error {
    /// The HTTP status the service answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::BadResponse(e) => e.status,
            Error::InvalidInput(_) | Error::Transport(_) | Error::Caller(_) => None,
        }
    }

    /// The caller's own error, to end a stream handed to a bulk call with, as
    /// [`Error::Caller`]: the bulk calls read `Stream<Item = Result<T, E>>` with
    /// `E: Into<Error>`, and this is how another error (a file that cannot be read, a line that
    /// does not parse) gets there: `.map_err(Error::from_caller)` on an `io::Error` stream.
    ///
    /// ```
    /// use futures_util::StreamExt as _;
    ///
    /// let lines = futures_util::stream::iter(["a=1", "b"]);
    /// let entries = lines.map(|line| match line.split_once('=') {
    ///     Some((key, value)) => Ok(edgekv::fastly::BulkEntry::new(key, value.to_string())),
    ///     None => Err(edgekv::Error::from_caller(format!("no '=' in {line:?}"))),
    /// });
    /// # let _ = entries;
    /// ```
    pub fn from_caller(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Caller(CallerError {
            source: error.into(),
            call: Box::default(),
        })
    }

    /// What a bulk call or prefix delete had done when this error ended it: every entry it
    /// read before is counted or named there, none in flight was abandoned. `None` for an
    /// error that did not end such a call.
    pub fn partial_report(&self) -> Option<&BulkReport> {
        self.call().and_then(|c| c.partial.as_deref())
    }

    /// This error, ending a bulk call that had done `report`. Input refused locally has no
    /// room for it: such an error can only have come from the caller's stream (the prefix
    /// deletes check their prefix before listing), so it becomes that stream's
    /// [`Error::Caller`], the refusal its `source()`.
    pub(crate) fn with_partial(self, report: BulkReport) -> Self {
        let mut error = match self {
            Error::InvalidInput(_) => Error::from_caller(self),
            other => other,
        };
        if let Some(call) = error.call_mut() {
            call.partial = Some(Box::new(report));
        }
        error
    }

    /// How many attempts the call made before failing (0 if refused before sending).
    pub fn attempts(&self) -> u32 {
        self.call().map_or(0, |c| c.attempts)
    }

    /// How long the service asked to wait before trying again (`Retry-After`), when the call
    /// ended without waiting: the wait was longer than the retry policy's `max_retry_after`, or
    /// no attempt was left.
    pub fn retry_after(&self) -> Option<Duration> {
        self.call().and_then(|c| c.retry_after)
    }

    /// What the service said about its rate limit on the failing answer.
    pub fn rate_limit(&self) -> Option<&RateLimit> {
        self.call().and_then(|c| c.rate_limit.as_ref())
    }

    /// What identifies the failing answer to the provider's support, when one came: Cloudflare's
    /// Ray ID (the `CF-Ray` header, which Cloudflare support asks for); for Fastly, whose API
    /// answers carry no request-id header, its `X-Served-By` and `X-Timer` headers together (the
    /// cache nodes and the request's start time, e.g.
    /// `cache-ewr-kewr1740030-EWR, cache-ewr-kewr1740030-EWR S1750707678.036046,VS0,VE135`).
    /// `None` when no answer came (refused locally, no connection, a timeout before the headers).
    pub fn request_id(&self) -> Option<&str> {
        self.call().and_then(|c| c.request_id.as_deref())
    }

    /// The provider the call went to (`None` for input refused before any request).
    pub fn provider(&self) -> Option<Provider> {
        match self {
            Error::Api(e) => Some(e.provider),
            Error::Transport(e) => Some(e.provider),
            Error::BadResponse(e) => Some(e.provider),
            Error::InvalidInput(_) | Error::Caller(_) => None,
        }
    }

    /// The credential was missing or not accepted: HTTP 401, or Cloudflare's code 10000
    /// ("Authentication error", which Cloudflare answers with 403).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED) || self.codes().contains(&10000)
    }

    /// The credential was accepted but may not do this (HTTP 403 other than Cloudflare's
    /// authentication error; Cloudflare's code 10037, a token without the permission).
    pub fn is_forbidden(&self) -> bool {
        (self.status() == Some(StatusCode::FORBIDDEN) && !self.is_unauthorized())
            || self.codes().contains(&10037)
    }

    /// The same call may succeed later: a connection or transfer that failed, a timeout, or a
    /// status the service uses for passing trouble (408, 429, 5xx and Cloudflare's 52x). This is
    /// what the retry policy retries; whether sending a call twice is safe is another question
    /// (see `RetryPolicy::retry_non_idempotent`).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(e) => e.never_sent || e.retryable,
            Error::Api(e) => crate::policy::is_retryable_status(e.status),
            Error::InvalidInput(_) | Error::BadResponse(_) | Error::Caller(_) => false,
        }
    }

    /// The error and its causes in one line, as a report shows them (`Display` gives the stage
    /// alone, the causes come from `source()`): what a per-key reason says.
    pub(crate) fn full_text(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    fn call(&self) -> Option<&CallInfo> {
        match self {
            Error::Api(e) => Some(&e.call),
            Error::Transport(e) => Some(&e.call),
            Error::BadResponse(e) => Some(&e.call),
            Error::Caller(e) => Some(&e.call),
            Error::InvalidInput(_) => None,
        }
    }

    fn call_mut(&mut self) -> Option<&mut CallInfo> {
        match self {
            Error::Api(e) => Some(&mut *e.call),
            Error::Transport(e) => Some(&mut *e.call),
            Error::BadResponse(e) => Some(&mut *e.call),
            Error::Caller(e) => Some(&mut *e.call),
            Error::InvalidInput(_) => None,
        }
    }

    pub(crate) fn with_call(mut self, call: CallInfo) -> Self {
        if let Some(slot) = self.call_mut() {
            *slot = call;
        }
        self
    }

    pub(crate) fn with_note(mut self, note: &'static str) -> Self {
        if let Some(call) = self.call_mut() {
            call.note = Some(note);
        }
        self
    }

    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        if let Some(call) = self.call_mut() {
            call.retry_after = Some(wait);
        }
        self
    }

    /// The provider's error codes (Cloudflare's `errors[].code`), in the order given.
    pub fn codes(&self) -> Vec<i64> {
        match self {
            Error::Api(e) => e.errors.iter().map(|m| m.code).collect(),
            _ => Vec::new(),
        }
    }

    /// The thing asked for does not exist (HTTP 404, or Cloudflare code 10009 key not found or
    /// 10013 namespace not found on an answer that is not a server error).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
            || (self.status().is_some_and(|s| !s.is_server_error())
                && self.codes().iter().any(|c| matches!(c, 10009 | 10013)))
    }

    /// The service refused the call for exceeding a rate limit (HTTP 429, or Cloudflare's code
    /// 971, "please wait and consider throttling your request speed").
    pub fn is_rate_limited(&self) -> bool {
        self.status() == Some(StatusCode::TOO_MANY_REQUESTS) || self.codes().contains(&971)
    }

    /// A condition on the write did not hold (HTTP 412): Fastly's `if-generation-match`
    /// mismatch, or `add` on a key that exists.
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(StatusCode::PRECONDITION_FAILED)
    }

    /// The call conflicts with the resource's state (HTTP 409), e.g. deleting a Fastly store
    /// that still holds items.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// The call ran out of time: an attempt, the idle-read timer, or the call's deadline.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Transport(e) => e.timed_out,
            _ => false,
        }
    }

    /// The answer was larger than the [`ReadLimits`](crate::policy::ReadLimits) allow for it, so
    /// it was not read further.
    pub fn is_answer_too_large(&self) -> bool {
        matches!(self, Error::BadResponse(e) if e.over_limit.is_some())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The stage only: what was refused and why is `source()`, so a reporter that prints
            // the chain says it once.
            Error::InvalidInput(_) => write!(f, "refused before sending")?,
            Error::Transport(e) => write!(f, "request to {} failed: {}", e.provider, e.what)?,
            Error::Api(e) => e.fmt(f)?,
            Error::BadResponse(e) => e.fmt(f)?,
            Error::Caller(_) => write!(f, "stopped by an error outside the service")?,
        }
        if let Some(call) = self.call() {
            if call.attempts > 1 {
                write!(f, " (after {} attempts)", call.attempts)?;
            }
            if let Some(wait) = call.retry_after {
                write!(
                    f,
                    "; the service asks to wait {} s before retrying",
                    wait.as_secs()
                )?;
            }
            if let Some(note) = call.note {
                write!(f, "; {note}")?;
            }
        }
        Ok(())
    }
}

/// What happened to a call on the wire, kept with its error.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct CallInfo {
    pub(crate) attempts: u32,
    pub(crate) request_id: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) note: Option<&'static str>,
    /// What the bulk call this error ended had done.
    pub(crate) partial: Option<Box<BulkReport>>,
}

/// Counts, not keys, for the partial report: an error's `Debug` ends up in logs, and a report
/// can name 25,000 keys of the caller's users.
impl fmt::Debug for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partial = self.partial.as_ref().map(|report| {
            format!(
                "{} written, {} deleted, {} failed",
                report.written,
                report.deleted,
                report.failed.len()
            )
        });
        f.debug_struct("CallInfo")
            .field("attempts", &self.attempts)
            .field("request_id", &self.request_id)
            .field("retry_after", &self.retry_after)
            .field("rate_limit", &self.rate_limit)
            .field("note", &self.note)
            .field("partial", &partial)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidInput(e) => Some(e),
            Error::Transport(e) => Some(e.source.as_ref()),
            Error::Api(_) => None,
            Error::BadResponse(e) => e
                .source
                .as_deref()
                .map(|s| s as &(dyn std::error::Error + 'static)),
            Error::Caller(e) => Some(e.source.as_ref()),
        }
    }
}

/// Input refused before any request was sent, each with what a caller needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The key is empty, `.` or `..`: no URL path segment can carry it.
    UnaddressableKey {
        /// The key's length in bytes (0, 1 or 2).
        len: usize,
    },
    /// An id (store, namespace, account) or key is empty, `.` or `..`, or the request's path
    /// would not be its operation's template with one segment per parameter.
    UnaddressableId,
    /// The provider does not accept this key (a reserved prefix, a control character).
    KeyNotAllowed {
        /// The rule it breaks.
        rule: &'static str,
        /// Where in the key, in bytes, the offending part starts.
        position: usize,
    },
    /// The key is longer than the provider allows, in bytes of UTF-8.
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The provider's limit in bytes.
        max: usize,
    },
    /// The namespace stores keys written on the URL literally (`supports_url_encoding` is
    /// false), and this key would need percent-encoding, so it would be stored under another name.
    KeyNeedsUrlEncoding {
        /// Where in the key, in bytes, the first byte that needs encoding is.
        position: usize,
    },
    /// The value is larger than the provider allows.
    ValueTooLarge {
        /// The value's length in bytes.
        len: u64,
        /// The provider's limit in bytes.
        max: u64,
    },
    /// The metadata is larger than the provider allows, serialized.
    MetadataTooLarge {
        /// The serialized metadata's length in bytes.
        len: usize,
        /// The provider's limit in bytes.
        max: usize,
    },
    /// The metadata travels as a header and cannot be one (a control character, say).
    MetadataNotHeaderValue,
    /// The metadata could not be serialized.
    MetadataNotSerializable {
        /// Why.
        reason: String,
    },
    /// `expiration_ttl` is below the provider's minimum.
    ExpirationTtlTooShort {
        /// The TTL asked for, in seconds.
        ttl: u64,
        /// The minimum, in seconds.
        min: u64,
    },
    /// A setting or argument is out of its range.
    OutOfRange {
        /// Which setting.
        what: &'static str,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// A credential cannot be sent as a header value (it holds a control character, say).
    Credential {
        /// Which header it was meant for.
        header: &'static str,
    },
    /// The request could not be built from the arguments (a header value with a newline, say).
    Unbuildable {
        /// Why.
        reason: String,
    },
    /// A required setting is missing (for example an environment variable).
    Missing {
        /// What is missing.
        what: String,
    },
    /// A sync would delete more of the destination's keys than its options allow
    /// (`transfer::JobOptions::max_delete_percent`); nothing was deleted.
    TooManyDeletes {
        /// Keys the sync would delete.
        deletes: u64,
        /// Keys the destination holds under the prefix.
        of: u64,
        /// The most it may delete, in percent of them.
        max_percent: u32,
    },
    /// A job's estimate is over the longest it may take (`transfer::JobOptions::max_duration`);
    /// it stopped before writing anything.
    JobTooLong {
        /// The estimate, in seconds.
        estimate_secs: u64,
        /// The most it may take, in seconds.
        max_secs: u64,
        /// The side whose provider's budget is the bound: `"source"` or `"destination"`.
        slowest: &'static str,
    },
    /// The provider cannot do this (see [`Capabilities`](crate::kv::Capabilities)): a
    /// conditional write on Cloudflare, text metadata where only JSON is kept.
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidInput::UnaddressableKey { len } => {
                write!(
                    f,
                    "the key ({len} bytes) cannot be sent: empty, `.` and `..` are not addressable in a URL"
                )
            }
            InvalidInput::UnaddressableId => f.write_str(
                "an id or key is empty, `.` or `..`, or would not stay one URL path segment",
            ),
            InvalidInput::KeyNotAllowed { rule, position } => {
                write!(f, "the key is not allowed (at byte {position}): {rule}")
            }
            InvalidInput::KeyTooLong { len, max } => {
                write!(f, "key is {len} bytes, over the limit of {max}")
            }
            InvalidInput::KeyNeedsUrlEncoding { position } => write!(
                f,
                "the key needs URL encoding (at byte {position}), and this namespace stores encoded keys literally"
            ),
            InvalidInput::ValueTooLarge { len, max } => {
                write!(f, "value is {len} bytes, over the limit of {max}")
            }
            InvalidInput::MetadataTooLarge { len, max } => {
                write!(
                    f,
                    "metadata is {len} bytes serialized, over the limit of {max}"
                )
            }
            InvalidInput::MetadataNotHeaderValue => {
                f.write_str("metadata is sent as a header and must be a valid header value (no control characters)")
            }
            InvalidInput::MetadataNotSerializable { reason } => {
                write!(f, "metadata cannot be serialized: {reason}")
            }
            InvalidInput::ExpirationTtlTooShort { ttl, min } => {
                write!(
                    f,
                    "expiration_ttl of {ttl} s is under the minimum of {min} s"
                )
            }
            InvalidInput::OutOfRange { what, allowed } => write!(f, "{what} must be {allowed}"),
            InvalidInput::Credential { header } => {
                write!(f, "the credential is not a valid {header} header value")
            }
            InvalidInput::Unbuildable { reason } => {
                write!(f, "the request cannot be built: {reason}")
            }
            InvalidInput::Missing { what } => write!(f, "{what} is missing"),
            InvalidInput::TooManyDeletes {
                deletes,
                of,
                max_percent,
            } => write!(
                f,
                "the sync would delete {deletes} of the destination's {of} keys, over the {max_percent}% it may \
                 (raise `max_delete_percent` to allow it)"
            ),
            InvalidInput::JobTooLong {
                estimate_secs,
                max_secs,
                slowest,
            } => write!(
                f,
                "the job would take about {estimate_secs} s within the {slowest}'s request budget, over its {max_secs} s"
            ),
            InvalidInput::Unsupported { what } => write!(f, "the provider does not support {what}"),
        }
    }
}

impl std::error::Error for InvalidInput {}

/// The caller's own error that ended a bulk call: [`Error::Caller`].
#[derive(Debug)]
pub struct CallerError {
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
    pub(crate) call: Box<CallInfo>,
}

/// The request did not complete.
#[derive(Debug)]
pub struct TransportError {
    pub(crate) provider: Provider,
    pub(crate) what: &'static str,
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
    /// The connection was never made: the service cannot have seen the request.
    pub(crate) never_sent: bool,
    /// Worth another attempt if sending twice is safe (not, say, an invalid URL).
    pub(crate) retryable: bool,
    /// A timer ended it.
    pub(crate) timed_out: bool,
    pub(crate) call: Box<CallInfo>,
}

impl TransportError {
    /// The provider the request went to.
    pub fn provider(&self) -> Provider {
        self.provider
    }
}

/// One `{code, message}` pair of an API error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiMessage {
    /// The provider's code (Cloudflare's numeric codes; 0 where the provider gives none).
    pub code: i64,
    /// The text.
    pub message: String,
}

/// The service answered with an error status or an unsuccessful envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The provider that answered.
    pub provider: Provider,
    /// The HTTP status.
    pub status: StatusCode,
    /// Every error the service listed (Cloudflare's `errors`), in order.
    pub errors: Vec<ApiMessage>,
    /// Informational messages that came with the error (Cloudflare's `messages`).
    pub messages: Vec<ApiMessage>,
    /// The start of the body, when it was not the provider's JSON error shape (a proxy's HTML
    /// page, say).
    pub excerpt: Option<String>,
    pub(crate) call: Box<CallInfo>,
}

impl ApiError {
    pub(crate) fn new(
        provider: Provider,
        status: StatusCode,
        errors: Vec<ApiMessage>,
        messages: Vec<ApiMessage>,
        excerpt: Option<String>,
    ) -> Self {
        ApiError {
            provider,
            status,
            errors,
            messages,
            excerpt,
            call: Box::default(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}", self.provider, self.status)?;
        for (i, e) in self.errors.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{} ({})", e.message, e.code)?;
        }
        if self.errors.is_empty()
            && let Some(excerpt) = &self.excerpt
        {
            write!(f, ": {excerpt:?}")?;
        }
        Ok(())
    }
}

/// The service answered, but the answer could not be understood.
#[derive(Debug)]
#[non_exhaustive]
pub struct BadResponse {
    /// The provider that answered.
    pub provider: Provider,
    /// The HTTP status, when known.
    pub status: Option<StatusCode>,
    /// What was wrong.
    pub reason: String,
    /// The start of the body, when there was one.
    pub excerpt: Option<String>,
    pub(crate) source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The read limit the answer went past, in bytes.
    pub(crate) over_limit: Option<usize>,
    pub(crate) call: Box<CallInfo>,
}

impl BadResponse {
    pub(crate) fn new(
        provider: Provider,
        status: Option<StatusCode>,
        reason: String,
        excerpt: Option<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BadResponse {
            provider,
            status,
            reason,
            excerpt,
            source,
            over_limit: None,
            call: Box::default(),
        }
    }
}

impl fmt::Display for BadResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected answer from {}", self.provider)?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// How many bytes of an unexpected body an error keeps.
const EXCERPT_BYTES: usize = 512;

/// The start of a body as text, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > EXCERPT_BYTES {
        text.push('…');
    }
    Some(text)
}

impl Error {
    pub(crate) fn transport(
        provider: Provider,
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        // reqwest's error carries the request URL, which holds the key: drop it.
        let source = match source.into().downcast::<reqwest::Error>() {
            Ok(e) => Box::new(e.without_url()) as Box<dyn std::error::Error + Send + Sync>,
            Err(other) => other,
        };
        let reqwest_error = source.downcast_ref::<reqwest::Error>();
        let never_sent = reqwest_error.is_some_and(reqwest::Error::is_connect);
        let retryable = reqwest_error.is_none_or(|e| !e.is_builder() && !e.is_redirect());
        let timed_out = source.is::<TimedOut>() || reqwest_error.is_some_and(is_reqwest_timeout);
        let call = Box::default();
        Error::Transport(TransportError {
            provider,
            what,
            source,
            never_sent,
            retryable,
            timed_out,
            call,
        })
    }

    /// An answer past the read limit `setting` of [`ReadLimits`](crate::policy::ReadLimits).
    pub(crate) fn answer_too_large(provider: Provider, limit: usize, setting: &str) -> Self {
        let reason = format!(
            "the answer is larger than its read limit of {limit} bytes (`ReadLimits::{setting}`)"
        );
        let mut bad = BadResponse::new(provider, None, reason, None, None);
        bad.over_limit = Some(limit);
        Error::BadResponse(bad)
    }

    pub(crate) fn bad_response(
        provider: Provider,
        status: Option<StatusCode>,
        reason: impl Into<String>,
    ) -> Self {
        Error::BadResponse(BadResponse::new(
            provider,
            status,
            reason.into(),
            None,
            None,
        ))
    }
}

impl From<InvalidInput> for Error {
    fn from(e: InvalidInput) -> Self {
        Error::InvalidInput(e)
    }
}

/// A timer of the crate's ended the call.
#[derive(Debug)]
pub(crate) struct TimedOut {
    /// Which timer.
    pub(crate) what: &'static str,
    pub(crate) after: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed after {:?}", self.what, self.after)
    }
}

impl std::error::Error for TimedOut {}

/// Whether reqwest gave up on a timer, its own or one of ours inside a body.
fn is_reqwest_timeout(error: &reqwest::Error) -> bool {
    error.is_timeout() || crate::transport::capped::find::<TimedOut>(error).is_some()
}

/// What of the caller's own an error must not carry, with the placeholder that replaces it in
/// text that came from the server: the key, the value, metadata, a listing's prefix or cursor,
/// the credential. Keys come from end users and errors end up in logs.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets<'a> {
    /// The first few, without an allocation: every facade call builds one.
    inline: [Option<Secret<'a>>; 3],
    more: Vec<Secret<'a>>,
}

type Secret<'a> = (&'a [u8], &'static str);

impl<'a> Secrets<'a> {
    pub(crate) fn new() -> Self {
        Secrets::default()
    }

    /// Adds `secret`, replaced by `placeholder` (empty secrets are nothing to hide).
    pub(crate) fn with(mut self, secret: &'a [u8], placeholder: &'static str) -> Self {
        if secret.is_empty() {
            return self;
        }
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some((secret, placeholder)),
            None => self.more.push((secret, placeholder)),
        }
        self
    }

    fn iter(&self) -> impl Iterator<Item = &Secret<'a>> {
        self.inline.iter().flatten().chain(self.more.iter())
    }

    pub(crate) fn key(key: &'a str) -> Self {
        Secrets::new().with(key.as_bytes(), "<key>")
    }

    pub(crate) fn with_opt(self, secret: Option<&'a str>, placeholder: &'static str) -> Self {
        match secret {
            Some(secret) => self.with(secret.as_bytes(), placeholder),
            None => self,
        }
    }

    /// `text` with every spelling of every secret replaced: as is, percent-encoded as a path
    /// segment or a query value, and escaped as a JSON string.
    ///
    /// A secret shorter than [`SHORT_SECRET`] bytes cannot be cut out of a text without leaving
    /// its shape around every replacement (and mangling the text): a text wholly the server's
    /// (`from_server`) holding one is withheld whole; in the crate's own text, which quotes the
    /// server only in part, such short secrets are left alone.
    fn scrub(&self, text: &str, from_server: bool) -> Option<String> {
        let mut out: Option<String> = None;
        for (secret, placeholder) in self.iter() {
            // Every spelling is at least as long as the secret: a longer one cannot be in the
            // text, and its spellings (copies of a value, maybe megabytes) are never built.
            if secret.len() > out.as_deref().unwrap_or(text).len()
                || (secret.len() < SHORT_SECRET && !from_server)
            {
                continue;
            }
            let secret = String::from_utf8_lossy(secret);
            for spelling in spellings(&secret) {
                let current = out.as_deref().unwrap_or(text);
                if spelling.len() <= current.len() && current.contains(spelling.as_str()) {
                    if secret.len() < SHORT_SECRET {
                        return Some(WITHHELD.to_string());
                    }
                    out = Some(current.replace(spelling.as_str(), placeholder));
                }
            }
        }
        out
    }

    fn scrub_in_place(&self, text: &mut String, from_server: bool) {
        if let Some(clean) = self.scrub(text, from_server) {
            *text = clean;
        }
    }

    /// An excerpt cut at a fixed length can end inside a secret: that start is dropped too.
    fn scrub_excerpt(&self, excerpt: &mut String) {
        self.scrub_in_place(excerpt, true);
        let Some(body) = excerpt.strip_suffix('…') else {
            return;
        };
        for (secret, placeholder) in self.iter() {
            if secret.len() < SHORT_SECRET {
                continue;
            }
            let secret = String::from_utf8_lossy(secret);
            for spelling in spellings(&secret) {
                let longest = (1..spelling.len().min(body.len() + 1))
                    .rev()
                    .filter(|n| spelling.is_char_boundary(*n))
                    .find(|n| body.ends_with(&spelling[..*n]));
                if let Some(n) = longest {
                    let kept = body.len() - n;
                    *excerpt = format!("{}{placeholder}…", &body[..kept]);
                    return;
                }
            }
        }
    }
}

/// Secrets shorter than this many bytes withhold the whole text they appear in.
const SHORT_SECRET: usize = 4;

/// What replaces a server text that held a secret too short to cut out.
const WITHHELD: &str = "<withheld: the server's text quotes a short key or value of the call>";

/// The ways a secret can appear in a server's text.
fn spellings(secret: &str) -> Vec<String> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const FORM: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    let mut all = vec![
        secret.to_string(),
        secret.replace(' ', "+"),
        crate::transport::segment::encode(secret).into_owned(),
        utf8_percent_encode(secret, FORM)
            .to_string()
            .replace("%20", "+"),
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
    ];
    if let Ok(json) = serde_json::to_string(secret) {
        all.push(json[1..json.len() - 1].to_string());
    }
    // The longest first, so that a shorter spelling does not break up a longer one.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
    all
}

/// An error's text, kept after redaction in place of the original (which could not be edited).
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// An error and its causes as one text, with their `Debug` too when `debug` (some errors show
/// more there than in `Display`).
fn chain_text(error: &(dyn std::error::Error + 'static), debug: bool) -> String {
    let mut text = String::new();
    let mut current = Some(error);
    while let Some(e) = current {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string());
        if debug {
            text.push_str(&format!(" {e:?}"));
        }
        current = e.source();
    }
    text
}

/// `source` as it is when nothing in its chain shows a secret, else its whole chain as redacted
/// text.
fn scrub_source(
    source: Box<dyn std::error::Error + Send + Sync>,
    secrets: &Secrets<'_>,
) -> Box<dyn std::error::Error + Send + Sync> {
    if secrets
        .scrub(&chain_text(source.as_ref(), true), false)
        .is_none()
    {
        return source;
    }
    let text = chain_text(source.as_ref(), false);
    Box::new(Redacted(secrets.scrub(&text, false).unwrap_or(text)))
}

impl Error {
    /// The same error with every secret of `secrets` replaced in the text that came from the
    /// server (messages, excerpts, reasons, the rate-limit policy) and in its cause.
    pub(crate) fn redact(mut self, secrets: &Secrets<'_>) -> Self {
        if secrets.iter().next().is_none() {
            return self;
        }
        if let Some(call) = self.call_mut() {
            // Both are header values the server chose: server text like any other.
            if let Some(policy) = call.rate_limit.as_mut().and_then(|r| r.policy.as_mut()) {
                secrets.scrub_in_place(policy, true);
            }
            if let Some(request_id) = call.request_id.as_mut() {
                secrets.scrub_in_place(request_id, true);
            }
        }
        match &mut self {
            Error::InvalidInput(_) | Error::Caller(_) => {}
            Error::Transport(e) => {
                let source = std::mem::replace(&mut e.source, Box::new(Redacted(String::new())));
                e.source = scrub_source(source, secrets);
            }
            Error::Api(e) => {
                for message in e.errors.iter_mut().chain(e.messages.iter_mut()) {
                    secrets.scrub_in_place(&mut message.message, true);
                }
                if let Some(excerpt) = e.excerpt.as_mut() {
                    secrets.scrub_excerpt(excerpt);
                }
            }
            Error::BadResponse(e) => {
                secrets.scrub_in_place(&mut e.reason, false);
                if let Some(excerpt) = e.excerpt.as_mut() {
                    secrets.scrub_excerpt(excerpt);
                }
                if let Some(source) = e.source.take() {
                    e.source = Some(scrub_source(source, secrets));
                }
            }
        }
        self
    }
}

/// Runs a facade call, redacting `secrets` from its error.
pub(crate) async fn redacting<T>(
    secrets: Secrets<'_>,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    call.await.map_err(|e| e.redact(&secrets))
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_secret_is_replaced() {
        let key = "ü x/\"y";
        let secrets = Secrets::key(key);
        let text = format!(
            "a {key} b {} c {} d {}",
            crate::transport::segment::encode(key),
            "%C3%BC+x%2F%22y",
            r#"ü x/\"y"#
        );
        let clean = secrets.scrub(&text, true).unwrap();
        assert_eq!(clean, "a <key> b <key> c <key> d <key>");
        assert_eq!(secrets.scrub("nothing here", true), None);
        let mut excerpt = "a long body ending in ü x/\\\"…".to_string();
        secrets.scrub_excerpt(&mut excerpt);
        assert_eq!(excerpt, "a long body ending in <key>…");
    }

    #[test]
    fn a_short_secret_withholds_the_text_and_bytes_are_matched_as_the_server_shows_them() {
        let short = Secrets::key("e");
        let text = "the request header is invalid";
        assert_eq!(short.scrub(text, true).as_deref(), Some(WITHHELD));
        assert_eq!(
            short.scrub(text, false),
            None,
            "the crate's own text is kept"
        );
        assert_eq!(short.scrub("no match at all", true), None);
        let value = b"plantedVALUE\xff";
        let secrets = Secrets::new().with(value, "<value>");
        let echoed = format!("bad body: {}", String::from_utf8_lossy(value));
        assert_eq!(
            secrets.scrub(&echoed, false).as_deref(),
            Some("bad body: <value>")
        );
        let huge = vec![b'x'; 1 << 20];
        assert_eq!(
            Secrets::new()
                .with(&huge, "<value>")
                .scrub("short text", true),
            None
        );
    }
}
