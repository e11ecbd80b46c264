//! How requests are sent: retries, timeouts, and rate limits, for both providers.
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | [`RetryPolicy::max_attempts`] | 3 | attempts per call, the first included (1: no retries) |
//! | [`RetryPolicy::base_delay`] | 200 ms | backoff before retry *n* is a random wait in `0..=base × 2^(n-1)` ("full jitter") |
//! | [`RetryPolicy::max_delay`] | 10 s | cap of one backoff wait |
//! | [`RetryPolicy::max_retry_after`] | 60 s | longest `Retry-After` honoured; a longer one fails at once, saying how long to wait |
//! | [`RetryPolicy::deadline`] | 120 s | total time for all attempts of one call |
//! | [`RetryPolicy::retry_non_idempotent`] | false | also retry writes a lost answer could make wrong (see below) |
//! | [`Timeouts::connect`] | 10 s | establishing a connection |
//! | [`Timeouts::attempt`] | 30 s | per attempt: until the response headers arrive and any body the call buffers (JSON, errors) is read |
//! | [`Timeouts::idle_read`] | 30 s | longest silence while a response (or a value) streams in |
//! | [`ReadLimits`] | see its docs | the most bytes read from an answer that is buffered (JSON, error bodies, `bytes()`) |
//! | [`RequestPolicy::client_limit`] | none | optional cap on requests per window, to stay under a provider's budget |
//!
//! Retried: failures to connect, timeouts, and the statuses 408, 429, 500, 502, 503, 504 and
//! Cloudflare's 520–527 and 530, honouring `Retry-After` (seconds or an HTTP date) and
//! `retry-after-ms`. A call whose request body was streamed is never sent twice (its error says
//! the body could not be replayed). Calls a lost answer could make wrong — creating a store or
//! namespace, Fastly's add, append and prepend, and any write or delete with
//! `if_generation_match` — are retried only after errors proving the request never reached the
//! service (the connection was refused), unless [`RetryPolicy::retry_non_idempotent`] is set.
//!
//! The timeout model, the same for every call of both providers:
//! - `connect` ([`Timeouts::connect`]): establishing a connection.
//! - per attempt ([`Timeouts::attempt`]): from sending until the headers and any buffered body
//!   (JSON answers, error bodies) are in; a streamed value's body is not part of it.
//! - idle read ([`Timeouts::idle_read`]): the longest silence while a body streams in.
//! - total per call ([`RetryPolicy::deadline`]): all attempts and the waits between them; it is
//!   enforced while an attempt runs, not only between attempts, and also bounds
//!   [`ValueStream::bytes`](crate::ValueStream::bytes). A value read as a stream is bounded by
//!   `idle_read` only; [`ValueStream::with_deadline`](crate::ValueStream::with_deadline) bounds its
//!   total time.
//!
//! `connect` and `idle_read` apply to the `reqwest::Client` the crate builds; a client of your own
//! keeps its own settings. Durations too large to add to the clock (`Duration::MAX`, say) are
//! treated as "no limit", never as an overflow.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// When and how often a call is tried again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per call, the first included; 1 turns retries off.
    pub max_attempts: u32,
    /// Scale of the exponential backoff.
    pub base_delay: Duration,
    /// Cap of one backoff wait.
    pub max_delay: Duration,
    /// Longest wait the service may ask for (`Retry-After`) that is honoured; a longer one fails
    /// the call at once with [`Error::retry_after`](crate::Error::retry_after) set.
    pub max_retry_after: Duration,
    /// Total time for all attempts of one call (`None`: no limit).
    pub deadline: Option<Duration>,
    /// Also retry calls a lost answer could make wrong (see the module docs).
    pub retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            deadline: Some(Duration::from_secs(120)),
            retry_non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// One attempt per call.
    pub fn disabled() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff before attempt `next_attempt` (2 for the first retry): full jitter.
    pub(crate) fn backoff(&self, next_attempt: u32) -> Duration {
        let exponent = next_attempt.saturating_sub(2).min(20);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

setters!(RetryPolicy {
    /// Sets [`max_attempts`](Self::max_attempts): attempts per call, the first included.
    ///
    /// ```
    /// use std::time::Duration;
    /// use edgekv::policy::{RequestPolicy, RetryPolicy};
    ///
    /// let retry = RetryPolicy::default()
    ///     .max_attempts(5)
    ///     .deadline(Some(Duration::from_secs(30)));
    /// let policy = RequestPolicy::default().retry(retry);
    /// assert_eq!(policy.retry.max_attempts, 5);
    /// ```
    max_attempts: u32,
    /// Sets [`base_delay`](Self::base_delay), the scale of the exponential backoff.
    base_delay: Duration,
    /// Sets [`max_delay`](Self::max_delay), the cap of one backoff wait.
    max_delay: Duration,
    /// Sets [`max_retry_after`](Self::max_retry_after), the longest `Retry-After` honoured.
    max_retry_after: Duration,
    /// Sets [`deadline`](Self::deadline), the total time of one call (`None`: no limit).
    deadline: Option<Duration>,
    /// Sets [`retry_non_idempotent`](Self::retry_non_idempotent).
    retry_non_idempotent: bool,
});

/// How long to wait for a connection, for response headers, and between chunks of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// Per attempt: until the response headers arrive and any body the call buffers (a JSON
    /// answer, an error body) has been read. Not the streamed body of a value.
    pub attempt: Duration,
    /// Longest silence while a response streams in (a 25 MiB value never trips a whole-request
    /// timeout, only a stall does).
    pub idle_read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            attempt: Duration::from_secs(30),
            idle_read: Duration::from_secs(30),
        }
    }
}

setters!(Timeouts {
    /// Sets [`connect`](Self::connect).
    ///
    /// ```
    /// use std::time::Duration;
    /// use edgekv::policy::Timeouts;
    ///
    /// let timeouts = Timeouts::default().connect(Duration::from_secs(3)).attempt(Duration::from_secs(10));
    /// assert_eq!(timeouts.attempt, Duration::from_secs(10));
    /// ```
    connect: Duration,
    /// Sets [`attempt`](Self::attempt).
    attempt: Duration,
    /// Sets [`idle_read`](Self::idle_read).
    idle_read: Duration,
});

/// The most bytes read from an answer the crate buffers, so that no answer, however large,
/// endless or slow, can exhaust memory. Past a limit the call fails with a
/// [`BadResponse`](crate::error::BadResponse) naming it
/// ([`Error::is_answer_too_large`](crate::Error::is_answer_too_large)); error bodies are cut
/// instead (only their start is kept for the message). Values read as a stream are not limited.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadLimits {
    /// An error answer (4xx, 5xx) of a call that is not a bulk or batch call: read up to this,
    /// for the provider's error codes and an excerpt, then the connection is dropped.
    /// Default 16 KiB.
    pub error_body: usize,
    /// A JSON answer of a single call (a namespace or store, metadata, a write's envelope).
    /// Default 1 MiB.
    pub json: usize,
    /// One page of a listing (up to 1,000 keys with their metadata). Default 16 MiB.
    pub page: usize,
    /// The answer of a bulk write or delete or of a Fastly batch, whatever its status: room for
    /// 10,000 refused lines or unsuccessful keys, each naming a key of up to 1 KiB with its
    /// reason. Default 16 MiB.
    pub bulk: usize,
    /// The answer of a Cloudflare bulk get, whatever its status (up to 100 values). A request
    /// whose answer is larger is split in halves, down to single keys, rather than failing keys.
    /// Default 64 MiB.
    pub bulk_get: usize,
    /// [`ValueStream::bytes`](crate::ValueStream::bytes): `None` means the provider's value
    /// maximum (Cloudflare 25 MiB, Fastly 25 MB).
    pub value_bytes: Option<u64>,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            error_body: 16 * 1024,
            json: 1024 * 1024,
            page: 16 * 1024 * 1024,
            bulk: 16 * 1024 * 1024,
            bulk_get: 64 * 1024 * 1024,
            value_bytes: None,
        }
    }
}

/// A cap on requests per time window, enforced before each attempt that counts: every request,
/// or (without [`counts_reads`](Self::counts_reads)) only those that are not `GET` or `HEAD`, as
/// each provider counts its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientLimit {
    /// Requests allowed per window (at least 1: a client with 0 is refused when built).
    pub requests: u32,
    /// The window.
    pub per: Duration,
    /// Whether reads (`GET`, `HEAD`) count: Cloudflare counts every request, Fastly only the
    /// others.
    pub counts_reads: bool,
}

impl ClientLimit {
    /// Cloudflare's API budget: 1,200 requests per 5 minutes per user, every request counted.
    pub const CLOUDFLARE: ClientLimit = ClientLimit {
        requests: 1200,
        per: Duration::from_secs(300),
        counts_reads: true,
    };
    /// Fastly's budget for non-read requests: 1,000 per hour; reads are not counted.
    pub const FASTLY_WRITES: ClientLimit = ClientLimit {
        requests: 1000,
        per: Duration::from_secs(3600),
        counts_reads: false,
    };

    /// `requests` per `per`, every request counted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use edgekv::policy::ClientLimit;
    ///
    /// // A tenth of Fastly's write budget, reads free.
    /// let limit = ClientLimit::new(100, Duration::from_secs(3600)).counts_reads(false);
    /// assert!(!limit.counts_reads);
    /// ```
    pub fn new(requests: u32, per: Duration) -> Self {
        ClientLimit {
            requests,
            per,
            counts_reads: true,
        }
    }

    /// Sets [`counts_reads`](Self::counts_reads).
    pub fn counts_reads(mut self, counts_reads: bool) -> Self {
        self.counts_reads = counts_reads;
        self
    }

    /// Whether a request with `method` counts.
    pub(crate) fn counts(&self, method: &str) -> bool {
        self.counts_reads || !matches!(method, "GET" | "HEAD")
    }

    /// A limit no request could pass is refused.
    pub(crate) fn check(&self) -> Result<(), crate::error::InvalidInput> {
        if self.requests == 0 {
            return Err(crate::error::InvalidInput::OutOfRange {
                what: "client_limit.requests",
                allowed: "at least 1",
            });
        }
        Ok(())
    }
}

setters!(ReadLimits {
    /// Sets [`error_body`](Self::error_body).
    ///
    /// ```
    /// let limits = edgekv::policy::ReadLimits::default().json(4 << 20).value_bytes(Some(1 << 20));
    /// assert_eq!(limits.json, 4 << 20);
    /// ```
    error_body: usize,
    /// Sets [`json`](Self::json).
    json: usize,
    /// Sets [`page`](Self::page).
    page: usize,
    /// Sets [`bulk`](Self::bulk).
    bulk: usize,
    /// Sets [`bulk_get`](Self::bulk_get).
    bulk_get: usize,
    /// Sets [`value_bytes`](Self::value_bytes).
    value_bytes: Option<u64>,
});

/// Everything that decides how a client's requests are sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestPolicy {
    /// Retries.
    pub retry: RetryPolicy,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Caps on buffered answers.
    pub read_limits: ReadLimits,
    /// An optional client-side request budget.
    pub client_limit: Option<ClientLimit>,
}

setters!(RequestPolicy {
    /// Sets [`retry`](Self::retry).
    ///
    /// ```
    /// use edgekv::policy::{ClientLimit, ReadLimits, RequestPolicy, RetryPolicy, Timeouts};
    ///
    /// let policy = RequestPolicy::default()
    ///     .retry(RetryPolicy::disabled())
    ///     .timeouts(Timeouts::default())
    ///     .read_limits(ReadLimits::default())
    ///     .client_limit(Some(ClientLimit::CLOUDFLARE));
    /// assert_eq!(policy.retry.max_attempts, 1);
    /// ```
    retry: RetryPolicy,
    /// Sets [`timeouts`](Self::timeouts).
    timeouts: Timeouts,
    /// Sets [`read_limits`](Self::read_limits).
    read_limits: ReadLimits,
    /// Sets [`client_limit`](Self::client_limit).
    client_limit: Option<ClientLimit>,
});

/// What the service said about its rate limit on its latest answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests allowed in the current window, where told.
    pub limit: Option<u64>,
    /// Requests left in the current window, where told.
    pub remaining: Option<u64>,
    /// Time until the window resets, where told.
    pub reset: Option<Duration>,
    /// The policy as the service described it (`Ratelimit-Policy`), verbatim.
    pub policy: Option<String>,
}

impl RateLimit {
    /// Reads Cloudflare's `Ratelimit` / `Ratelimit-Policy` (IETF draft: `"name";r=50;t=30` or
    /// `limit=100, remaining=50, reset=30`), `X-RateLimit-*`, and Fastly's
    /// `Fastly-RateLimit-Remaining` / `-Reset` (a UNIX time). `None` when none is present.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<RateLimit> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let mut rate = RateLimit {
            limit: number("x-ratelimit-limit"),
            remaining: number("x-ratelimit-remaining")
                .or_else(|| number("fastly-ratelimit-remaining")),
            reset: number("x-ratelimit-reset").map(Duration::from_secs),
            policy: text("ratelimit-policy").map(str::to_string),
        };
        if let Some(reset_at) = number("fastly-ratelimit-reset") {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            rate.reset = Some(Duration::from_secs(reset_at.saturating_sub(now)));
        }
        if let Some(field) = text("ratelimit") {
            for (key, value) in field
                .split([';', ','])
                .filter_map(|part| part.trim().split_once('='))
            {
                let value = value.trim().trim_matches('"').parse::<u64>().ok();
                match key.trim() {
                    "r" | "remaining" => rate.remaining = value.or(rate.remaining),
                    "t" | "reset" => rate.reset = value.map(Duration::from_secs).or(rate.reset),
                    "limit" => rate.limit = value.or(rate.limit),
                    _ => {}
                }
            }
        }
        (rate != RateLimit::default()).then_some(rate)
    }
}

/// The wait the service asked for: `retry-after-ms`, else `Retry-After` in seconds or as an
/// HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    let value = text("retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// A time to live in the whole seconds both services count, rounded up: a key never expires
/// before the caller asked.
pub(crate) fn ttl_seconds(ttl: Duration) -> u64 {
    ttl.as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
}

/// Statuses worth another attempt.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        408 | 429 | 500 | 502 | 503 | 504 | 520..=527 | 530
    )
}

/// Whether sending a call twice ends the same as sending it once, so a lost answer cannot make
/// a retry wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, plain writes and deletes.
    Idempotent,
    /// Creates, Fastly add/append/prepend, anything conditional on a generation.
    NotIdempotent,
}

/// A sliding-window request budget shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: ClientLimit,
    sent: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Limiter {
    pub(crate) fn new(limit: ClientLimit) -> Self {
        Limiter {
            limit,
            sent: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more request fits in the window, and counts it: a request of `method`
    /// the limit does not count goes at once.
    pub(crate) async fn acquire(&self, method: &str) {
        if !self.limit.counts(method) {
            return;
        }
        let mut sent = self.sent.lock().await;
        loop {
            let now = Instant::now();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.limit.per)
            {
                sent.pop_front();
            }
            if sent.len() < self.limit.requests as usize {
                sent.push_back(now);
                return;
            }
            // The window is full; with `requests` at least 1 (checked when the client is
            // built) it holds a request, the oldest of which leaves it first.
            let Some(&oldest) = sent.front() else {
                return;
            };
            tokio::time::sleep(self.limit.per.saturating_sub(now.duration_since(oldest))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_ttl_is_whole_seconds_rounded_up() {
        assert_eq!(ttl_seconds(Duration::from_secs(60)), 60);
        assert_eq!(ttl_seconds(Duration::from_millis(60_001)), 61);
        assert_eq!(ttl_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "7")])),
            Some(Duration::from_millis(250))
        );
        let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
        let wait = retry_after(&headers(&[("retry-after", &in_a_minute)])).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn rate_limit_headers_of_both_providers_are_read() {
        let cloudflare = RateLimit::from_headers(&headers(&[
            ("ratelimit", "\"default\";r=50;t=30"),
            ("ratelimit-policy", "\"default\";q=1200;w=300"),
        ]))
        .unwrap();
        assert_eq!(
            (cloudflare.remaining, cloudflare.reset),
            (Some(50), Some(Duration::from_secs(30)))
        );
        assert_eq!(
            cloudflare.policy.as_deref(),
            Some("\"default\";q=1200;w=300")
        );
        let draft = RateLimit::from_headers(&headers(&[(
            "ratelimit",
            "limit=100, remaining=5, reset=9",
        )]))
        .unwrap();
        assert_eq!(
            (draft.limit, draft.remaining, draft.reset),
            (Some(100), Some(5), Some(Duration::from_secs(9)))
        );
        let legacy = RateLimit::from_headers(&headers(&[
            ("x-ratelimit-limit", "1200"),
            ("x-ratelimit-remaining", "3"),
        ]))
        .unwrap();
        assert_eq!((legacy.limit, legacy.remaining), (Some(1200), Some(3)));
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let fastly = RateLimit::from_headers(&headers(&[
            ("fastly-ratelimit-remaining", "999"),
            ("fastly-ratelimit-reset", &(now + 100).to_string()),
        ]))
        .unwrap();
        assert_eq!(fastly.remaining, Some(999));
        assert!(fastly.reset.unwrap() <= Duration::from_secs(100));
        assert_eq!(RateLimit::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            assert!(policy.backoff(2) <= Duration::from_millis(100));
            assert!(policy.backoff(3) <= Duration::from_millis(200));
            assert!(policy.backoff(9) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 520, 522, 527, 530] {
            assert!(
                is_retryable_status(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 412, 501, 528] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_client_limit_waits_for_room_in_the_window() {
        let limiter = Limiter::new(ClientLimit::new(2, Duration::from_secs(10)));
        let start = tokio::time::Instant::now();
        limiter.acquire("PUT").await;
        limiter.acquire("PUT").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire("PUT").await;
        assert!(start.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_that_does_not_count_reads_lets_them_through() {
        let writes = Limiter::new(ClientLimit::new(1, Duration::from_secs(10)).counts_reads(false));
        let start = tokio::time::Instant::now();
        writes.acquire("PUT").await;
        for _ in 0..100 {
            writes.acquire("GET").await;
            writes.acquire("HEAD").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "reads wait for nothing");
        writes.acquire("DELETE").await;
        assert!(
            start.elapsed() >= Duration::from_secs(10),
            "the second write waits"
        );

        let every = Limiter::new(ClientLimit::CLOUDFLARE);
        assert!(ClientLimit::CLOUDFLARE.counts("GET") && !ClientLimit::FASTLY_WRITES.counts("GET"));
        every.acquire("GET").await;
        assert_eq!(every.sent.lock().await.len(), 1, "Cloudflare counts reads");
    }

    #[test]
    fn a_limit_of_no_requests_is_refused() {
        assert!(ClientLimit::new(0, Duration::from_secs(1)).check().is_err());
        assert!(ClientLimit::new(1, Duration::from_secs(1)).check().is_ok());
    }
}
