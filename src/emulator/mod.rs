//! A local emulator of both APIs (feature `emulator`): a real HTTP server on loopback with the
//! services' semantics, for tests, examples and benchmarks that must not reach the network.
//!
//! One server answers both APIs (their paths do not collide): Fastly at
//! [`Emulator::fastly_url`], Cloudflare at [`Emulator::cloudflare_url`]. State lives in memory
//! and ends with the server, unless [`EmulatorConfig::persist`] names a directory (see
//! [Persistence](self#persistence)).
//!
//! As a test fixture: ready clients, a fresh store or namespace, a clock the test moves and the
//! log of the requests served.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use edgekv::emulator::{Api, Emulator};
//!
//! let emu = Emulator::new().await?;
//! let namespace = emu.cloudflare_namespace().await?;
//! let store = emu.fastly_store().await?;
//!
//! let options = edgekv::cloudflare::PutOptions::new().expiration_ttl(60);
//! namespace.put("greeting", "hello", options).await?;
//! emu.advance(Duration::from_secs(60));
//! assert!(namespace.get("greeting").await?.is_none());
//!
//! let last = emu.requests().pop().expect("the get");
//! assert_eq!((last.api, last.method.as_str(), last.status), (Api::Cloudflare, "GET", 404));
//! # let _ = store;
//! # Ok(())
//! # }
//! ```
//!
//! # Persistence
//!
//! With [`EmulatorConfig::persist`] (the binary's `--persist DIR`) every acknowledged write is
//! appended to a log in that directory and synced to disk (`fsync`) before it is answered, and
//! the log is replayed on start: a write the emulator answered survives a crash or SIGKILL. A
//! write whose record cannot be synced is answered 500 (its change may stay in memory until
//! the next start). The whole state is held in memory (there is no cache to size); the log is
//! compacted to one record per live store, namespace and key each time it is opened. The test
//! clock ([`Emulator::advance`]) is not persisted. Pure Rust, no database.
//!
//! ## Log format, version 1
//!
//! The file `edgekv-emulator.log` in the directory is UTF-8 text, one record per line, each
//! ended by `\n`. The first line is the header `edgekv-emulator-log v1`; a file with another
//! header is refused (`InvalidData`), never guessed at, and a later format gets a new version.
//! Every following line is one JSON object whose `op` names the state a write left behind (not
//! the request that caused it, so replay needs neither the clock nor the rules):
//!
//! | `op` | fields | meaning |
//! |---|---|---|
//! | `fastly_store` | `id`, `name`, `created_at` | a store created or renamed |
//! | `fastly_store_deleted` | `id` | a store deleted |
//! | `fastly_put` | `store`, `key`, `value`, `generation`, `metadata`, `expires` | an item as stored |
//! | `fastly_delete` | `store`, `key` | an item deleted |
//! | `cloudflare_namespace` | `id`, `title`, `supports_url_encoding` | a namespace created or renamed |
//! | `cloudflare_namespace_deleted` | `id` | a namespace deleted |
//! | `cloudflare_put` | `namespace`, `key`, `value`, `expiration`, `metadata` | a key as stored |
//! | `cloudflare_delete` | `namespace`, `key` | a key deleted |
//!
//! `value` and Fastly `metadata` are standard base64 (with padding) of the exact bytes;
//! Cloudflare `metadata` is the metadata's JSON text, or null. `expires` and `expiration` are
//! UNIX seconds, or null. A crash while appending can leave the last line cut short: replay
//! ignores an unreadable last line and cuts it off the file (that write was never answered).
//! An unreadable line before the last is not a torn write, and the log is refused. Fields may
//! be added within v1; readers ignore fields they do not know.

mod cloudflare;
mod fastly;
pub mod faults;
mod persist;
mod rules;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use bytes::Bytes;

/// The token the default configuration accepts, for both APIs.
pub const DEFAULT_TOKEN: &str = "emulator-token";
/// The Cloudflare account the default configuration serves.
pub const DEFAULT_ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
/// Largest request body the emulator reads (the Cloudflare bulk limit, with room).
const MAX_BODY_BYTES: usize = 128 * 1024 * 1024;
/// How many requests [`Emulator::requests`] keeps: the most recent, older ones are dropped so
/// a long-running emulator does not grow without bound.
pub const REQUEST_LOG_CAPACITY: usize = 100_000;

/// How the emulator starts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Tokens accepted as `Fastly-Key`.
    pub fastly_tokens: Vec<String>,
    /// Tokens accepted as Cloudflare bearer tokens, and as global keys (any email).
    pub cloudflare_tokens: Vec<String>,
    /// The Cloudflare account served; others answer "could not route".
    pub cloudflare_account: String,
    /// Misbehaviour to inject.
    pub faults: Faults,
    /// A directory whose log keeps the state across restarts (created if missing); `None`:
    /// memory only. See [Persistence](self#persistence).
    pub persist: Option<PathBuf>,
    /// Cloudflare's request budget, counted as Cloudflare counts it (every request); `None`:
    /// unlimited.
    pub cloudflare_budget: Option<Budget>,
    /// Fastly's request budget, counted as Fastly counts it (requests other than `GET` and
    /// `HEAD`); `None`: unlimited.
    pub fastly_budget: Option<Budget>,
}

/// A request budget: past `requests` counted requests within `per`, the emulator answers 429
/// with `Retry-After` (the seconds until the oldest counted request leaves the window), as the
/// service does past its own (Cloudflare: 1,200 per 5 minutes; Fastly: 1,000 writes per hour).
/// Scaled down, it lets a budgeted job be tested and benchmarked in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Counted requests allowed within the window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl Budget {
    /// `requests` counted requests per `per`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use edgekv::emulator::{Budget, EmulatorConfig};
    ///
    /// // Cloudflare's budget, a hundred times faster.
    /// let config = EmulatorConfig::default().cloudflare_budget(Budget::new(1200, Duration::from_secs(3)));
    /// assert_eq!(config.cloudflare_budget.map(|b| b.requests), Some(1200));
    /// ```
    pub fn new(requests: u32, per: Duration) -> Self {
        Budget { requests, per }
    }
}

impl EmulatorConfig {
    /// Serves on this port of 127.0.0.1 (0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Keeps the state in a log in `dir`, replayed on start.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use edgekv::emulator::{Emulator, EmulatorConfig};
    ///
    /// let config = EmulatorConfig::default().port(8787).persist("target/emulator-data");
    /// let emu = Emulator::start(config).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn persist(mut self, dir: impl Into<PathBuf>) -> Self {
        self.persist = Some(dir.into());
        self
    }

    /// Accepts these tokens as `Fastly-Key` (replacing the default).
    pub fn fastly_tokens<T: Into<String>>(mut self, tokens: impl IntoIterator<Item = T>) -> Self {
        self.fastly_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts these tokens as Cloudflare credentials (replacing the default).
    pub fn cloudflare_tokens<T: Into<String>>(
        mut self,
        tokens: impl IntoIterator<Item = T>,
    ) -> Self {
        self.cloudflare_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// Serves this Cloudflare account.
    pub fn cloudflare_account(mut self, account: impl Into<String>) -> Self {
        self.cloudflare_account = account.into();
        self
    }

    /// Injects these faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Enforces this budget on the Cloudflare API (every request counts).
    pub fn cloudflare_budget(mut self, budget: Budget) -> Self {
        self.cloudflare_budget = Some(budget);
        self
    }

    /// Enforces this budget on the Fastly API (requests other than `GET` and `HEAD` count).
    pub fn fastly_budget(mut self, budget: Budget) -> Self {
        self.fastly_budget = Some(budget);
        self
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            fastly_tokens: vec![DEFAULT_TOKEN.to_string()],
            cloudflare_tokens: vec![DEFAULT_TOKEN.to_string()],
            cloudflare_account: DEFAULT_ACCOUNT.to_string(),
            faults: Faults::default(),
            persist: None,
            cloudflare_budget: None,
            fastly_budget: None,
        }
    }
}

/// Misbehaviour injected before requests are served, decided by a seeded generator so a run can
/// be repeated.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// Added before every answer.
    pub latency: Duration,
    /// Fraction of requests answered 429 (0.0 to 1.0), with [`retry_after`](Self::retry_after).
    pub rate_limited: f64,
    /// The wait an injected 429 asks for: `Retry-After` in whole seconds (at least 1) and
    /// `retry-after-ms` exactly (default 1 s).
    pub retry_after: Duration,
    /// Fraction of requests answered 503 (0.0 to 1.0).
    pub server_errors: f64,
    /// Seed of the fault decisions.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            rate_limited: 0.0,
            retry_after: Duration::from_secs(1),
            server_errors: 0.0,
            seed: 0,
        }
    }
}

setters!(Faults {
    /// Adds this latency before every answer.
    latency: Duration,
    /// Answers this fraction of requests 429 (0.0 to 1.0).
    rate_limited: f64,
    /// Asks for this wait in injected 429s.
    retry_after: Duration,
    /// Answers this fraction of requests 503 (0.0 to 1.0).
    server_errors: f64,
    /// Seeds the fault decisions.
    seed: u64,
});

/// A running emulator. Dropping it stops the server; [`Emulator::stop`] waits for it.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<Shared>,
    clients: (
        std::sync::OnceLock<crate::fastly::Client>,
        std::sync::OnceLock<crate::cloudflare::Client>,
    ),
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Starts serving on a free port of 127.0.0.1 with the default configuration
    /// ([`DEFAULT_TOKEN`], [`DEFAULT_ACCOUNT`], no faults, memory only): the test fixture's
    /// one line.
    pub async fn new() -> std::io::Result<Emulator> {
        Emulator::start(EmulatorConfig::default()).await
    }

    /// Starts serving on 127.0.0.1 as configured. With [`EmulatorConfig::persist`], replays
    /// the log first; a log that cannot be read is an error (`InvalidData`), never skipped.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        // The ready clients send the first token of each API: one no header can carry is refused
        // here, with an error, rather than later by `fastly()` / `cloudflare()`.
        let tokens = config.fastly_tokens.first().into_iter();
        for token in tokens.chain(config.cloudflare_tokens.first()) {
            if reqwest::header::HeaderValue::from_str(token).is_err() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an emulator token is not a valid HTTP header value",
                ));
            }
        }
        let state = Arc::new(Shared::new(config)?);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", state.config.port)).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method, uri, headers, body| {
                let state = state.clone();
                async move { serve(state, method, uri, headers, body).await }
            }
        });
        let state_for_handle = state.clone();
        let (shutdown, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stopped => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(connection(state.clone(), app.clone(), stream));
            }
        });
        Ok(Emulator {
            addr,
            state: state_for_handle,
            clients: Default::default(),
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the Fastly API.
    pub fn fastly_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL of the Cloudflare API.
    pub fn cloudflare_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// A builder of a Fastly client for this emulator (its URL and first token), for a client
    /// with its own policy; [`Emulator::fastly`] builds it as is.
    pub fn fastly_builder(&self) -> crate::fastly::ClientBuilder {
        let token = self.state.config.fastly_tokens.first().cloned();
        crate::fastly::Client::builder(token.unwrap_or_default()).base_url(self.fastly_url())
    }

    /// A builder of a Cloudflare client for this emulator (its URL, first token and account);
    /// [`Emulator::cloudflare`] builds it as is.
    pub fn cloudflare_builder(&self) -> crate::cloudflare::ClientBuilder {
        let config = &self.state.config;
        let token = config
            .cloudflare_tokens
            .first()
            .cloned()
            .unwrap_or_default();
        crate::cloudflare::Client::builder(token, config.cloudflare_account.clone())
            .base_url(self.cloudflare_url())
    }

    /// A Fastly client for this emulator (built once, then shared: clones are cheap).
    ///
    /// # Panics
    ///
    /// If no HTTP client can be built at all (no TLS provider); a token no header can carry is
    /// refused by [`Emulator::start`] already.
    pub fn fastly(&self) -> crate::fastly::Client {
        let build = || {
            self.fastly_builder()
                .build()
                .expect("a Fastly client for the emulator")
        };
        self.clients.0.get_or_init(build).clone()
    }

    /// A Cloudflare client for this emulator (built once, then shared: clones are cheap).
    ///
    /// # Panics
    ///
    /// If no HTTP client can be built at all (no TLS provider); a token no header can carry is
    /// refused by [`Emulator::start`] already.
    pub fn cloudflare(&self) -> crate::cloudflare::Client {
        let build = || {
            self.cloudflare_builder()
                .build()
                .expect("a Cloudflare client for the emulator")
        };
        self.clients.1.get_or_init(build).clone()
    }

    /// Creates a store with a fresh name through the API (one request) and returns its handle,
    /// known to exist (a missing item answers from its one request).
    pub async fn fastly_store(&self) -> Result<crate::fastly::Store, crate::Error> {
        let client = self.fastly();
        let created = client.create_store(self.fresh_name(), None).await?;
        // Just created: a missing item answers from its one request.
        Ok(client.store(created.id).known_to_exist())
    }

    /// Creates a namespace with a fresh title through the API (one request) and returns its
    /// handle, which knows the namespace's URL encoding (its first put makes no extra request).
    pub async fn cloudflare_namespace(&self) -> Result<crate::cloudflare::Namespace, crate::Error> {
        let client = self.cloudflare();
        let created = client
            .create_namespace(self.fresh_name())
            .await?
            .into_inner();
        let encoding = created.supports_url_encoding.unwrap_or(true);
        Ok(client.namespace(created.id).with_url_encoding(encoding))
    }

    fn fresh_name(&self) -> String {
        let n = self.state.names.fetch_add(1, Ordering::Relaxed);
        format!("edgekv-test-{n}")
    }

    /// Writes entries into a Fastly store directly (no request is served or logged), each with
    /// a new generation, no metadata and no TTL. Fails `NotFound` without the store,
    /// `InvalidInput` on a key the service refuses, or with the persistence log's error.
    pub fn seed_fastly<K, V>(
        &self,
        store_id: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> std::io::Result<()>
    where
        K: Into<String>,
        V: AsRef<[u8]>,
    {
        let entries = entries
            .into_iter()
            .map(|(k, v)| (k.into(), Bytes::copy_from_slice(v.as_ref())));
        let mut fastly = self.state.fastly();
        let outcome = fastly.seed(store_id, entries, self.state.clock.now_micros());
        self.state.persist(&mut fastly.pending)?;
        outcome
    }

    /// Writes entries into a Cloudflare namespace directly (no request is served or logged),
    /// with no metadata and no expiration. Fails as [`Emulator::seed_fastly`] does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emu = edgekv::emulator::Emulator::new().await?;
    /// let namespace = emu.cloudflare_namespace().await?;
    /// emu.seed_cloudflare(namespace.id(), [("user/1", "{}"), ("user/2", "{}")])?;
    /// assert!(namespace.get("user/2").await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn seed_cloudflare<K, V>(
        &self,
        namespace_id: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> std::io::Result<()>
    where
        K: Into<String>,
        V: AsRef<[u8]>,
    {
        let entries = entries
            .into_iter()
            .map(|(k, v)| (k.into(), Bytes::copy_from_slice(v.as_ref())));
        let mut cloudflare = self.state.cloudflare();
        let outcome = cloudflare.seed(namespace_id, entries);
        self.state.persist(&mut cloudflare.pending)?;
        outcome
    }

    /// Moves the emulator's clock forward, for both APIs: expirations and TTLs pass as if
    /// `by` had elapsed, without waiting. Generations keep rising. Not persisted.
    pub fn advance(&self, by: Duration) {
        let micros = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        let offset = &self.state.clock.offset;
        let _ = offset.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            Some(now.saturating_add(micros))
        });
    }

    /// The emulator's now, as UNIX seconds: the system clock plus every [`Emulator::advance`].
    pub fn now(&self) -> i64 {
        self.state.clock.now()
    }

    /// The requests served so far, oldest first (at most the last [`REQUEST_LOG_CAPACITY`]).
    /// Requests answered by an injected fault are included; a body over the emulator's read
    /// limit (128 MiB) is not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emu = edgekv::emulator::Emulator::new().await?;
    /// let store = emu.fastly_store().await?;
    /// emu.clear_requests();
    /// store.put("a/b", "1", edgekv::fastly::PutOptions::new()).await?;
    /// let requests = emu.requests();
    /// assert_eq!(requests.len(), 1);
    /// assert!(requests[0].path.ends_with("/keys/a%2Fb"));
    /// assert_eq!(requests[0].header("fastly-key"), Some("[redacted]"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests().iter().cloned().collect()
    }

    /// Forgets the requests served so far, so a test can count those of the call under test.
    pub fn clear_requests(&self) {
        self.state.requests().clear();
    }

    /// Stops the server and waits for open connections to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Which API a recorded request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Api {
    /// The Fastly KV Store API.
    Fastly,
    /// The Cloudflare Workers KV API.
    Cloudflare,
    /// Neither: a path the emulator does not serve.
    Unknown,
}

/// A request the emulator served, as [`Emulator::requests`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The API the path belongs to.
    pub api: Api,
    /// The method, e.g. `"PUT"`.
    pub method: String,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The query as sent, still percent-encoded (`None` without one).
    pub query: Option<String>,
    /// The headers as sent (names in lower case); the credentials' values (`fastly-key`,
    /// `authorization`, `x-auth-key`) are replaced by `"[redacted]"`.
    pub headers: Vec<(String, String)>,
    /// The length of the body read.
    pub body_len: usize,
    /// The status answered (0 for an injected fault that sent no status: a reset or a stall).
    pub status: u16,
    /// The `CF-Ray` header the emulator answered a Cloudflare request with, as the service
    /// adds one to every answer (Cloudflare's HTTP headers reference,
    /// developers.cloudflare.com/fundamentals/reference/http-headers/): 16 hex digits, a dash,
    /// and `EMU` where the service names its data center. `None` for Fastly, whose API answers
    /// carry no request-id header, and for injected faults.
    pub ray_id: Option<String>,
}

impl RecordedRequest {
    /// A header's value, by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The emulator's now: the system clock moved forward by the test.
#[derive(Default)]
struct Clock {
    offset: AtomicU64,
}

impl Clock {
    fn now_micros(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        system.saturating_add(self.offset.load(Ordering::Relaxed))
    }

    fn now(&self) -> i64 {
        (self.now_micros() / 1_000_000) as i64
    }
}

/// Everything the server knows.
struct Shared {
    config: EmulatorConfig,
    rng: Mutex<fastrand::Rng>,
    fastly: Mutex<fastly::State>,
    cloudflare: Mutex<cloudflare::State>,
    clock: Clock,
    journal: Option<Mutex<persist::Journal>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    /// Numbers the fixture's fresh store and namespace names.
    names: AtomicU64,
    /// Numbers the Ray IDs of Cloudflare answers.
    rays: AtomicU64,
    /// When each counted request of the current budget windows came: Cloudflare's, Fastly's.
    windows: Mutex<(
        VecDeque<tokio::time::Instant>,
        VecDeque<tokio::time::Instant>,
    )>,
}

impl Shared {
    fn new(config: EmulatorConfig) -> std::io::Result<Self> {
        let rng = Mutex::new(fastrand::Rng::with_seed(config.faults.seed));
        let mut fastly = fastly::State::default();
        let mut cloudflare = cloudflare::State::default();
        let journal = match &config.persist {
            Some(dir) => {
                let (mut journal, records) = persist::open(dir)?;
                for record in records {
                    fastly.replay(&record);
                    cloudflare.replay(&record);
                }
                let mut live = fastly.records();
                live.extend(cloudflare.records());
                journal.compact(&live)?;
                fastly.journaling = true;
                cloudflare.journaling = true;
                Some(Mutex::new(journal))
            }
            None => None,
        };
        Ok(Shared {
            config,
            rng,
            fastly: Mutex::new(fastly),
            cloudflare: Mutex::new(cloudflare),
            clock: Clock::default(),
            journal,
            requests: Mutex::default(),
            names: AtomicU64::new(fastrand::u64(..1 << 32)),
            rays: AtomicU64::new(fastrand::u64(..)),
            windows: Mutex::default(),
        })
    }

    fn fastly(&self) -> MutexGuard<'_, fastly::State> {
        self.fastly.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cloudflare(&self) -> MutexGuard<'_, cloudflare::State> {
        self.cloudflare.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes a write's records to the log and syncs them; called with the state's lock held,
    /// so the log's order is the state's.
    fn persist(&self, pending: &mut Vec<persist::Record>) -> std::io::Result<()> {
        let records = std::mem::take(pending);
        match &self.journal {
            Some(journal) => journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&records),
            None => Ok(()),
        }
    }

    /// How long a request to `api` with `method` must wait, if its budget is spent; else it is
    /// counted now.
    fn over_budget(&self, api: Api, method: &Method) -> Option<Duration> {
        let (budget, counts) = match api {
            Api::Cloudflare => (
                self.config.cloudflare_budget?,
                rules::cloudflare::counts_toward_budget(method.as_str()),
            ),
            Api::Fastly => (
                self.config.fastly_budget?,
                rules::fastly::counts_toward_budget(method.as_str()),
            ),
            Api::Unknown => return None,
        };
        if !counts {
            return None;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = match api {
            Api::Cloudflare => &mut windows.0,
            _ => &mut windows.1,
        };
        let now = tokio::time::Instant::now();
        while window
            .front()
            .is_some_and(|at| now.duration_since(*at) >= budget.per)
        {
            window.pop_front();
        }
        if window.len() < budget.requests as usize {
            window.push_back(now);
            return None;
        }
        let oldest = window.front().copied().unwrap_or(now);
        Some(budget.per.saturating_sub(now.duration_since(oldest)))
    }

    fn record(&self, request: RecordedRequest) {
        let mut requests = self.requests();
        if requests.len() >= REQUEST_LOG_CAPACITY {
            requests.pop_front();
        }
        requests.push_back(request);
    }
}

/// The answer to a write that could not be made durable.
fn not_persisted(error: &std::io::Error) -> Response<Body> {
    tracing::error!(%error, "the emulator could not persist a write");
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        &[],
        Bytes::from(format!("the emulator could not persist the write: {error}")),
    )
}

/// A request as the API modules see it: the raw path split into still-encoded segments.
pub(crate) struct Request {
    /// The emulator's clock when the request arrived, in microseconds since the UNIX epoch.
    pub(crate) now_micros: u64,
    pub(crate) method: Method,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request {
    /// The emulator's now in UNIX seconds.
    pub(crate) fn now(&self) -> i64 {
        (self.now_micros / 1_000_000) as i64
    }

    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A path segment, percent-decoded.
    pub(crate) fn decoded(&self, index: usize) -> Option<String> {
        let raw = self.segments.get(index)?;
        Some(
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned(),
        )
    }

    /// A path segment, percent-decoded to the bytes it carries, UTF-8 or not.
    pub(crate) fn decoded_bytes(&self, index: usize) -> Option<Vec<u8>> {
        let raw = self.segments.get(index)?;
        Some(percent_encoding::percent_decode_str(raw).collect())
    }
}

/// Serves one connection: with faults configured, one request per connection, each first given
/// the chance of an injected fault, played by the same code as the fault tests' server.
async fn connection(state: Arc<Shared>, app: axum::Router, stream: tokio::net::TcpStream) {
    let faults = &state.config.faults;
    let inject = faults.rate_limited > 0.0 || faults.server_errors > 0.0;
    if inject {
        let fault = {
            let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
            let (throttle, fail) = (
                rng.f64() < faults.rate_limited,
                rng.f64() < faults.server_errors,
            );
            if throttle {
                let wait = faults.retry_after;
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Some(
                    faults::Reply::status(429)
                        .header("retry-after", seconds.max(1).to_string())
                        .header("retry-after-ms", wait.as_millis().to_string()),
                )
            } else if fail {
                Some(faults::Reply::body(503, "text/plain", "injected fault"))
            } else {
                None
            }
        };
        if let Some(reply) = fault {
            let mut stream = tokio::io::BufReader::new(stream);
            if let Some(seen) = faults::read_request(&mut stream).await {
                let status = match &reply {
                    faults::Reply::Respond { status, .. } => *status,
                    _ => 0,
                };
                state.record(recorded_fault(seen, status));
                faults::play(stream.into_inner(), reply).await;
            }
            return;
        }
    }
    let service = hyper_util::service::TowerToHyperService::new(app);
    let io = hyper_util::rt::TokioIo::new(stream);
    // Without keep-alive each request gets its own fault decision.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(!inject)
        .serve_connection(io, service)
        .await;
}

/// The log's entry for a request answered by an injected fault.
fn recorded_fault(seen: faults::Seen, status: u16) -> RecordedRequest {
    let (path, query) = match seen.target.split_once('?') {
        Some((path, query)) => (path.to_string(), Some(query.to_string())),
        None => (seen.target.clone(), None),
    };
    RecordedRequest {
        api: api_of(&path),
        method: seen.method,
        path,
        query,
        headers: seen
            .headers
            .into_iter()
            .map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                let value = redact(&name, value);
                (name, value)
            })
            .collect(),
        body_len: seen.body.len(),
        status,
        ray_id: None,
    }
}

fn api_of(path: &str) -> Api {
    if path.starts_with("/resources/stores/kv") {
        Api::Fastly
    } else if path.starts_with("/client/v4/") {
        Api::Cloudflare
    } else {
        Api::Unknown
    }
}

/// A header's value as logged: credentials never are.
fn redact(name: &str, value: String) -> String {
    match name {
        "fastly-key" | "authorization" | "x-auth-key" => "[redacted]".to_string(),
        _ => value,
    }
}

async fn serve(
    state: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let faults = state.config.faults.clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, &[], Bytes::new()),
    };
    let path = uri.path();
    let api = api_of(path);
    let mut recorded = RecordedRequest {
        api,
        method: method.to_string(),
        path: path.to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), redact(name.as_str(), value))
            })
            .collect(),
        body_len: body.len(),
        status: 0,
        ray_id: None,
    };
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let query = uri.query().map(form_urlencoded_pairs).unwrap_or_default();
    let request = Request {
        now_micros: state.clock.now_micros(),
        method,
        segments,
        query,
        headers,
        body,
    };
    if let Some(wait) = state.over_budget(api, &request.method) {
        let response = rate_limited(api, wait);
        recorded.status = response.status().as_u16();
        state.record(recorded);
        return response;
    }
    let mut response = match api {
        Api::Fastly => fastly::serve(&state, request),
        Api::Cloudflare => cloudflare::serve(&state, request).await,
        Api::Unknown => respond(
            StatusCode::NOT_FOUND,
            &[],
            Bytes::from_static(b"not an emulated API"),
        ),
    };
    if api == Api::Cloudflare {
        let ray = format!("{:016x}-EMU", state.rays.fetch_add(1, Ordering::Relaxed));
        if let Ok(value) = axum::http::HeaderValue::from_str(&ray) {
            response.headers_mut().insert("cf-ray", value);
        }
        recorded.ray_id = Some(ray);
    }
    recorded.status = response.status().as_u16();
    state.record(recorded);
    response
}

/// The refusal of a request past its API's budget: 429 with `Retry-After` in whole seconds
/// (rounded up) and `retry-after-ms` (which the crate's client reads first), and for Cloudflare
/// its envelope with code 971.
fn rate_limited(api: Api, wait: Duration) -> Response<Body> {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let headers = [
        ("retry-after", seconds.max(1).to_string()),
        ("retry-after-ms", wait.as_millis().max(1).to_string()),
    ];
    match api {
        Api::Cloudflare => {
            let body = serde_json::json!({
                "success": false,
                "errors": [{
                    "code": rules::cloudflare::RATE_LIMITED_CODE,
                    "message": "Please wait and consider throttling your request speed"
                }],
                "messages": [],
                "result": null
            });
            let mut headers = headers.to_vec();
            headers.push(("content-type", "application/json".to_string()));
            respond(
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                Bytes::from(body.to_string()),
            )
        }
        _ => respond(StatusCode::TOO_MANY_REQUESTS, &headers, Bytes::new()),
    }
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// A response with these headers and body.
pub(crate) fn respond(
    status: StatusCode,
    headers: &[(&str, String)],
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value);
    }
    response
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A known path asked with a method it does not have; `allow` lists those it has.
fn method_not_allowed(allow: &str) -> Response<Body> {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        &[("allow", allow.to_string())],
        Bytes::from_static(b"method not allowed"),
    )
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    respond(
        status,
        &[("content-type", "application/json".into())],
        Bytes::from(value.to_string()),
    )
}

/// A random identifier of `len` characters from `alphabet`.
fn random_id(state: &Shared, len: usize, alphabet: &[u8]) -> String {
    let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
    (0..len)
        .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_log_keeps_the_most_recent() {
        let shared = Shared::new(EmulatorConfig::default()).unwrap();
        for status in 0..REQUEST_LOG_CAPACITY + 5 {
            shared.record(RecordedRequest {
                api: Api::Unknown,
                method: "GET".into(),
                path: "/".into(),
                query: None,
                headers: Vec::new(),
                body_len: 0,
                status: status as u16,
                ray_id: None,
            });
        }
        let requests = shared.requests();
        assert_eq!(requests.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(requests.front().map(|r| r.status), Some(5));
    }

    #[test]
    fn the_clock_moves_forward_only_by_advance() {
        let clock = Clock::default();
        let before = clock.now();
        clock.offset.fetch_add(3_600_000_000, Ordering::Relaxed);
        assert!(clock.now() >= before + 3600);
    }
}
