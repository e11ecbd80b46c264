//! A local emulator of both APIs (feature `emulator`): a real HTTP server on loopback with the
//! services' semantics, for tests, examples and benchmarks that must not reach the network.
//!
//! One server answers both APIs (their paths do not collide): Fastly at
//! [`Emulator::fastly_url`], Cloudflare at [`Emulator::cloudflare_url`]. State lives in memory
//! and ends with the server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use edgekv::emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start(EmulatorConfig::default()).await?;
//! let fastly = edgekv::fastly::Client::builder(edgekv::emulator::DEFAULT_TOKEN)
//!     .base_url(emulator.fastly_url())
//!     .build()?;
//! let store = fastly.create_store("scratch", None).await?;
//! emulator.stop().await;
//! # Ok(())
//! # }
//! ```

mod cloudflare;
mod fastly;
pub mod faults;
mod rules;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            port: 0,
            fastly_tokens: vec![DEFAULT_TOKEN.to_string()],
            cloudflare_tokens: vec![DEFAULT_TOKEN.to_string()],
            cloudflare_account: DEFAULT_ACCOUNT.to_string(),
            faults: Faults::default(),
        }
    }
}

/// Misbehaviour injected before requests are served, decided by a seeded generator so a run can
/// be repeated.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// Added before every answer.
    pub latency: Duration,
    /// Fraction of requests answered 429 with `Retry-After: 1` (0.0 to 1.0).
    pub rate_limited: f64,
    /// Fraction of requests answered 503 (0.0 to 1.0).
    pub server_errors: f64,
    /// Seed of the fault decisions.
    pub seed: u64,
}

/// A running emulator. Dropping it stops the server; [`Emulator::stop`] waits for it.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Starts serving on 127.0.0.1.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared::new(config));
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method, uri, headers, body| {
                let state = state.clone();
                async move { serve(state, method, uri, headers, body).await }
            }
        });
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

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Everything the server knows.
struct Shared {
    config: EmulatorConfig,
    rng: Mutex<fastrand::Rng>,
    fastly: Mutex<fastly::State>,
    cloudflare: Mutex<cloudflare::State>,
}

impl Shared {
    fn new(config: EmulatorConfig) -> Self {
        let rng = Mutex::new(fastrand::Rng::with_seed(config.faults.seed));
        Shared {
            config,
            rng,
            fastly: Mutex::default(),
            cloudflare: Mutex::default(),
        }
    }
}

/// A request as the API modules see it: the raw path split into still-encoded segments.
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request {
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
                Some(faults::Reply::status(429).header("retry-after", "1"))
            } else if fail {
                Some(faults::Reply::body(503, "text/plain", "injected fault"))
            } else {
                None
            }
        };
        if let Some(reply) = fault {
            let mut stream = tokio::io::BufReader::new(stream);
            if faults::read_request(&mut stream).await.is_some() {
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
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let query = uri.query().map(form_urlencoded_pairs).unwrap_or_default();
    let request = Request {
        method,
        segments,
        query,
        headers,
        body,
    };
    if path.starts_with("/resources/stores/kv") {
        fastly::serve(&state, request)
    } else if path.starts_with("/client/v4/") {
        cloudflare::serve(&state, request).await
    } else {
        respond(
            StatusCode::NOT_FOUND,
            &[],
            Bytes::from_static(b"not an emulated API"),
        )
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

/// Seconds since the UNIX epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A random identifier of `len` characters from `alphabet`.
fn random_id(state: &Shared, len: usize, alphabet: &[u8]) -> String {
    let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
    (0..len)
        .map(|_| alphabet[rng.usize(..alphabet.len())] as char)
        .collect()
}
