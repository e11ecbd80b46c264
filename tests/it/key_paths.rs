//! Hostile keys and ids never leave their URL path segment (issue 11).
//!
//! A seeded loop draws thousands of keys and ids (any Unicode scalar, `\`, `/`, `%`, dot
//! segments and their `%2e` spellings, controls, `?`, `#`, sub-delims, keys across the length
//! limits) and sends each through every operation with a path parameter, through both facades
//! and both raw clients, to a loopback server that records the request line exactly as it
//! arrived. For every call exactly one of these holds:
//! - the key is in the documented refused set, the call fails with `InvalidInput` (facades) or
//!   `InvalidRequest` (raw clients), and no request arrives;
//! - one request arrives, with the operation's method and path template, and its parameter
//!   segments percent-decode to exactly the key and ids.
//!
//! The refused sets are written here from the documentation, not taken from the crate: a test
//! that asked the crate which keys it refuses would pass whatever it refused.
//!
//! Then one named regression test per traversal the issue observed.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgekv::policy::{RequestPolicy, RetryPolicy};
use edgekv::{Credential, Error, cloudflare, fastly};
use futures_util::TryStreamExt as _;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::support::envelope::{cf_ok, cf_page};

/// Ids used where the parameter under test is another one: plain, so only the tested one varies.
const STORE: &str = "st0re1d";
const ACCOUNT: &str = "acc0unt1d";
const NAMESPACE: &str = "nam3spac31d";
const KEY: &str = "k";
/// Cloudflare's real base URL has a path, which a traversal can climb out of.
const CF_BASE_PATH: &str = "/client/v4";

/// Far more than a loopback call takes, far less than the default timeouts (30 s).
const CALL_BOUND: Duration = Duration::from_secs(10);
/// Fixed seeds: a failure reproduces, and the keys are the same on every run.
const KEY_SEEDS: [u64; 4] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003, 0x5eed_0004];
const KEYS_PER_SEED: usize = 600;
const ID_SEEDS: [u64; 2] = [0x1d5e_ed01, 0x1d5e_ed02];
const IDS_PER_SEED: usize = 150;

/// Parameters that name a store, account or namespace; any other parameter is a key.
const ID_PARAMS: [&str; 3] = ["store_id", "account_id", "namespace_id"];
/// Operations in a table that only the facade sends (no raw method): the Fastly ndjson batch.
const FACADE_ONLY: [(Provider, &str); 1] = [(Provider::Fastly, "kv_store_batch")];

// ---------------------------------------------------------------------------------------------
// The refused sets, as documented.

/// Refused by every client: no URL path segment can carry these.
fn unaddressable(s: &str) -> bool {
    s.is_empty() || s == "." || s == ".."
}

fn fastly_facade_refuses(key: &str) -> bool {
    unaddressable(key)
        || key.len() > 1024
        || key.starts_with(".well-known/acme-challenge/")
        || key.chars().any(char::is_control)
}

fn cloudflare_facade_refuses(key: &str) -> bool {
    unaddressable(key) || key.len() > 512
}

/// A namespace with `supports_url_encoding: false` stores the URL's text literally, so only
/// keys the encoder leaves as they are can be written: unreserved, sub-delims, `:` and `@`.
fn literal_namespace_refuses(key: &str) -> bool {
    cloudflare_facade_refuses(key) || key.chars().any(|c| !stays_literal(c))
}

fn stays_literal(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

/// The raw clients check no limits: they refuse only what no segment can carry.
fn raw_refuses(key: &str) -> bool {
    unaddressable(key)
}

// ---------------------------------------------------------------------------------------------
// Drawing keys.

/// Pieces a hostile caller would put in a key: separators in every spelling the URL parser
/// might honour, dot segments, escapes valid and invalid, controls, what the parser encodes
/// itself and what it leaves raw, sub-delims, multi-byte and lookalike characters.
#[rustfmt::skip]
const ATOMS: &[&str] = &[
    "\\", "/", "%", ".", "..", "../", "..\\", "/..", "\\..", "%2e", "%2E", "%2e%2e", ".%2E",
    "%2E.", "%2f", "%2F", "%5c", "%5C", "%25", "%zz", "%0", "%c0%ae", "\t", "\r", "\n", "\r\n",
    "\0", "\x01", "\x1b", "\x1f", "\x7f", "\u{85}", "\u{9b}", "?", "#", " ", "!", "$", "&", "'",
    "(", ")", "*", "+", ",", ";", "=", ":", "@", "^", "|", "[", "]", "{", "}", "\"", "<", ">",
    "`", "-", "_", "~", "a", "Z", "0", "é", "€", "😀", "\u{feff}", "\u{200b}", "\u{2028}",
    "\u{fffd}", "\u{10ffff}", "．", "／", "＼", ".well-known", "acme-challenge",
];

/// Whole keys at the edges of the rules.
#[rustfmt::skip]
const EDGE_KEYS: &[&str] = &[
    "", ".", "..", "...", "%2e", "%2E", "%2e%2e", "%2E%2e", ".%2e", "%2e.", "./", "/.", "/",
    "//", "\\", "\\\\", "..\\", "\\..", "./..", "..%2f", "..%5c", ". ", " .", "\t..", "..\n",
    "\r", "\0", "?", "#", "%", "a%zz", "x\\y", "a:b@c!$&'()*+,;=d", "a^b|c[d]e{f}g`h\"i<j>k",
    ".well-known/acme-challenge/", ".well-known/acme-challenge/x",
    ".well-known/acme-challenge", "x.well-known/acme-challenge/", "..\\..\\..\\tokens\\self",
];

/// The edge keys, and keys exactly at and one past each limit, in ASCII and multi-byte.
fn edge_keys() -> Vec<String> {
    let mut keys: Vec<String> = EDGE_KEYS.iter().map(|k| k.to_string()).collect();
    for (unit, count) in [("a", 512), ("é", 256), ("a", 1024), ("😀", 256)] {
        keys.push(unit.repeat(count));
        keys.push(unit.repeat(count) + "a");
    }
    keys.push("€".repeat(170) + "aa"); // 512 bytes
    keys.push("€".repeat(171)); // 513 bytes: the last character crosses the limit
    keys.push("\\".repeat(1024));
    keys.push(".well-known/acme-challenge/".to_string() + &"a".repeat(1000));
    keys
}

fn piece(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..4) {
        0 | 1 => ATOMS[rng.usize(..ATOMS.len())].to_string(),
        2 => rng.char(..).to_string(),
        _ => rng.char('\0'..='\x7f').to_string(),
    }
}

/// A key of about 512 or 1024 bytes: just under, at or just over a limit, sometimes crossing it
/// with a multi-byte character, with hostile pieces inside.
fn long_key(rng: &mut fastrand::Rng) -> String {
    let limit = if rng.bool() { 512 } else { 1024 };
    let target = limit - 3 + rng.usize(0..=6);
    let mut key = String::new();
    while key.len() < target {
        let next = if rng.u8(0..8) == 0 {
            piece(rng)
        } else {
            rng.alphanumeric().to_string()
        };
        if key.len() + next.len() > target && rng.bool() {
            key.push_str(&"x".repeat(target - key.len()));
        } else {
            key.push_str(&next);
        }
    }
    key
}

fn draw_key(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..20) {
        0 | 1 => long_key(rng),
        2 => ".well-known/acme-challenge/".to_string() + &piece(rng),
        _ => (0..rng.usize(1..=12)).map(|_| piece(rng)).collect(),
    }
}

/// The edge keys, then `per_seed` drawn keys for each seed.
fn keys(seeds: &[u64], per_seed: usize) -> Vec<String> {
    let mut keys = edge_keys();
    for seed in seeds {
        let mut rng = fastrand::Rng::with_seed(*seed);
        keys.extend((0..per_seed).map(|_| draw_key(&mut rng)));
    }
    keys
}

// ---------------------------------------------------------------------------------------------
// The recording server.

/// A request as it arrived: the request line's method and target, byte for byte.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    target: Vec<u8>,
}

impl Received {
    fn show(&self) -> String {
        format!(
            "{} {:?}",
            self.method,
            String::from_utf8_lossy(&self.target)
        )
    }
}

#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Recorded {
    received: Vec<Received>,
    answer: Option<Answer>,
}

/// A minimal HTTP/1.1 server (keep-alive, `Content-Length` and chunked request bodies) that
/// records every request line and answers what it was told to. Not httpmock: it must keep the
/// target exactly as sent, and calls are checked one at a time, so a plain list is enough.
#[derive(Clone)]
struct Recorder {
    base: String,
    state: Arc<Mutex<Recorded>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Recorded::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        Recorder { base, state }
    }

    fn cloudflare_base(&self) -> String {
        format!("{}{CF_BASE_PATH}", self.base)
    }

    fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = Some(answer);
    }

    /// The requests received since the last call.
    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut self.state.lock().unwrap().received)
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<Recorded>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = Vec::new();
        if read.read_until(b'\n', &mut request_line).await? == 0 {
            return Ok(());
        }
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = Vec::new();
            if read.read_until(b'\n', &mut line).await? == 0 {
                return Ok(());
            }
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        // The body is read and dropped so the connection can carry the next request.
        if chunked {
            loop {
                let mut size = Vec::new();
                read.read_until(b'\n', &mut size).await?;
                let size = String::from_utf8_lossy(&size);
                let size = size.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).unwrap_or(0);
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let mut line = Vec::new();
                        if read.read_until(b'\n', &mut line).await? == 0 || line == b"\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; size + 2];
                read.read_exact(&mut chunk).await?;
            }
        } else {
            let mut body = vec![0; length];
            read.read_exact(&mut body).await?;
        }
        let line = request_line.strip_suffix(b"\r\n").unwrap_or(&request_line);
        let mut parts = line.splitn(3, |b| *b == b' ');
        let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let target = parts.next().unwrap_or_default().to_vec();
        let answer = {
            let mut state = state.lock().unwrap();
            state.received.push(Received { method, target });
            state.answer.clone()
        };
        let answer = answer.unwrap_or(Answer {
            status: 500,
            headers: vec![],
            body: b"no answer scripted".to_vec(),
        });
        let mut head = format!("HTTP/1.1 {} Scripted\r\n", answer.status);
        if answer.status != 204 {
            head += &format!("content-length: {}\r\n", answer.body.len());
        }
        for (name, value) in &answer.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        // One write: a head and body written apart wait on Nagle and delayed ACKs (40 ms).
        let mut response = head.into_bytes();
        response.extend_from_slice(&answer.body);
        write.write_all(&response).await?;
    }
}

/// A plausible success for each operation, so every call ends after its one request.
fn answer_for(provider: Provider, op: &str) -> Answer {
    let json = |status: u16, body: &str| Answer {
        status,
        headers: vec![("content-type", "application/json")],
        body: body.as_bytes().to_vec(),
    };
    let empty = |status: u16| Answer {
        status,
        headers: vec![],
        body: Vec::new(),
    };
    let envelope = |body: serde_json::Value| json(200, &body.to_string());
    match (provider, op) {
        (Provider::Fastly, "kv_store_get") => json(200, r#"{"id":"st0re1d","name":"n"}"#),
        (Provider::Fastly, "kv_store_put" | "kv_store_upsert_item") => empty(200),
        (Provider::Fastly, "kv_store_delete" | "kv_store_delete_item") => empty(204),
        (Provider::Fastly, "kv_store_list_item_keys") => json(200, r#"{"data":[],"meta":{}}"#),
        (Provider::Fastly, "kv_store_get_item") => Answer {
            status: 200,
            headers: vec![
                ("generation", "1"),
                ("content-type", "application/octet-stream"),
            ],
            body: b"v".to_vec(),
        },
        (Provider::Fastly, "kv_store_batch") => {
            json(200, r#"{"type":"","title":"success","errors":[]}"#)
        }
        (Provider::Cloudflare, "namespace_list") => envelope(cf_page(
            json!([]),
            json!({"page": 1, "per_page": 20, "count": 0, "total_count": 0, "total_pages": 1}),
        )),
        (Provider::Cloudflare, "namespace_create" | "namespace_get" | "namespace_rename") => {
            envelope(cf_ok(
                json!({"id": NAMESPACE, "title": "t", "supports_url_encoding": true}),
            ))
        }
        (Provider::Cloudflare, "keys_list") => {
            envelope(cf_page(json!([]), json!({"count": 0, "cursor": ""})))
        }
        (Provider::Cloudflare, "value_get") => Answer {
            status: 200,
            headers: vec![("content-type", "application/octet-stream")],
            body: b"v".to_vec(),
        },
        (Provider::Cloudflare, "bulk_write" | "bulk_delete") => envelope(cf_ok(
            json!({"successful_key_count": 1, "unsuccessful_keys": []}),
        )),
        (Provider::Cloudflare, "bulk_get") => envelope(cf_ok(json!({"values": {"k": "v"}}))),
        (Provider::Cloudflare, _) => envelope(cf_ok(serde_json::Value::Null)),
        (Provider::Fastly, _) => panic!("no answer for {op}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking one call.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Provider {
    Fastly,
    Cloudflare,
}

impl Provider {
    fn operations(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            Provider::Fastly => fastly::raw::OPERATIONS,
            Provider::Cloudflare => cloudflare::raw::OPERATIONS,
        }
    }

    fn base_path(self) -> &'static str {
        match self {
            Provider::Fastly => "",
            Provider::Cloudflare => CF_BASE_PATH,
        }
    }

    /// The operation's method and path template, from the generated table.
    fn operation(self, op: &str) -> (&'static str, &'static str) {
        let (_, method, path) = self
            .operations()
            .iter()
            .find(|(id, ..)| *id == op)
            .unwrap_or_else(|| panic!("{op} is not in the {self:?} table"));
        (method, path)
    }

    fn uses(self, op: &str, param: &str) -> bool {
        self.operation(op).1.contains(&format!("{{{param}}}"))
    }
}

/// How a call was made; the Cloudflare facade's put has two wire forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Facade,
    /// `Namespace::put` with metadata: the hand-written multipart request.
    FacadeMultipart,
    /// A namespace with `supports_url_encoding: false`.
    FacadeLiteral,
    Raw,
}

enum Outcome {
    Refused,
    Other(String),
}

/// A call's result, as the check needs it: refused before sending, or anything else.
trait Classify {
    fn classify(self) -> Outcome;
}

impl<T> Classify for Result<T, Error> {
    fn classify(self) -> Outcome {
        match self {
            Err(Error::InvalidInput(_)) => Outcome::Refused,
            Err(e) => Outcome::Other(format!("Err({e})")),
            Ok(_) => Outcome::Other("Ok".to_string()),
        }
    }
}

impl<T, E: std::fmt::Debug> Classify for Result<T, fastly::raw::Error<E>> {
    fn classify(self) -> Outcome {
        match self {
            Err(fastly::raw::Error::InvalidRequest(_)) => Outcome::Refused,
            Err(e) => Outcome::Other(format!("Err({e})")),
            Ok(_) => Outcome::Other("Ok".to_string()),
        }
    }
}

/// Runs calls one at a time against one recorder and collects every mismatch.
struct Checker {
    recorder: Recorder,
    failures: Vec<String>,
    exercised: BTreeSet<(Provider, &'static str, Via)>,
    calls: usize,
    requests: usize,
}

impl Checker {
    fn new(recorder: Recorder) -> Checker {
        Checker {
            recorder,
            failures: Vec::new(),
            exercised: BTreeSet::new(),
            calls: 0,
            requests: 0,
        }
    }

    /// Makes one call, draining its answer, and checks it: refused with no request when
    /// `refused`, else exactly one request on the operation's template with `params`.
    async fn run<O: Classify>(
        &mut self,
        provider: Provider,
        op: &'static str,
        via: Via,
        params: &[(&str, &str)],
        refused: bool,
        call: impl Future<Output = O>,
    ) {
        self.exercised.insert((provider, op, via));
        self.calls += 1;
        self.recorder.answer(answer_for(provider, op));
        // To find the call that hangs or panics: each call is printed before it is made.
        if std::env::var_os("KEY_PATHS_TRACE").is_some() {
            eprintln!("{provider:?} {op} {via:?} {params:?}");
        }
        // A bound per call, so a call that never ends fails the test instead of hanging it.
        let outcome = match tokio::time::timeout(CALL_BOUND, call).await {
            Ok(result) => result.classify(),
            Err(_) => Outcome::Other(format!("no result within {CALL_BOUND:?}")),
        };
        let received = self.recorder.take();
        self.requests += received.len();
        let what = || format!("{provider:?} {op} via {via:?} with {params:?}");
        let shown = || received.iter().map(Received::show).collect::<Vec<_>>();
        match (outcome, refused) {
            (Outcome::Refused, true) if received.is_empty() => {}
            (Outcome::Refused, true) => {
                self.failures
                    .push(format!("{}: refused, yet sent {:?}", what(), shown()))
            }
            (Outcome::Refused, false) => self.failures.push(format!(
                "{}: refused, but the documented rules accept it (sent {:?})",
                what(),
                shown()
            )),
            (Outcome::Other(result), true) => self.failures.push(format!(
                "{}: should be refused with InvalidInput and no request; got {result}, sent {:?}",
                what(),
                shown()
            )),
            (Outcome::Other(result), false) => {
                let checked = match received.as_slice() {
                    [one] => check_request(provider, op, params, one),
                    _ => Err(format!("{} requests: {:?}", received.len(), shown())),
                };
                if let Err(why) = checked {
                    self.failures
                        .push(format!("{}: {why} (call returned {result})", what()));
                }
            }
        }
    }

    /// Fails the test if an operation of either table that has one of `params` in its path was
    /// never called through a facade, or through its raw client where one exists.
    fn assert_exercised(&self, wants: impl Fn(&str) -> bool) {
        let mut missing = Vec::new();
        for provider in [Provider::Fastly, Provider::Cloudflare] {
            for (op, _, path) in provider.operations() {
                let params = path_params(path);
                if !params.iter().any(|p| wants(p)) {
                    continue;
                }
                let mut vias = vec![Via::Facade];
                if !FACADE_ONLY.contains(&(provider, op)) {
                    vias.push(Via::Raw);
                }
                for via in vias {
                    if !self.exercised.contains(&(provider, *op, via)) {
                        missing.push(format!("{provider:?} {op} via {via:?}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "never exercised: {missing:#?}");
    }

    fn assert_no_failures(&self, what: &str) {
        if self.failures.is_empty() {
            return;
        }
        let shown: Vec<&String> = self.failures.iter().take(40).collect();
        panic!(
            "{what}: {} of {} calls failed; the first {}:\n{}",
            self.failures.len(),
            self.calls,
            shown.len(),
            shown
                .iter()
                .map(|f| format!("  - {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn path_params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The request has the operation's method, and its path (the target up to `?`) is the template
/// under the base path: literal segments equal, each parameter segment made only of RFC 3986
/// `pchar` characters and `%XX` escapes, decoding to exactly the parameter's UTF-8 bytes.
fn check_request(
    provider: Provider,
    op: &str,
    params: &[(&str, &str)],
    received: &Received,
) -> Result<(), String> {
    let (method, template) = provider.operation(op);
    if received.method != method {
        return Err(format!("method {} instead of {method}", received.method));
    }
    let target = &received.target;
    let path = match target.iter().position(|b| *b == b'?') {
        Some(query) => &target[..query],
        None => &target[..],
    };
    let expected = format!("{}{template}", provider.base_path());
    let expected: Vec<&str> = expected.split('/').collect();
    let got: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    let mismatch = |why: String| {
        Err(format!(
            "{why}: received {}, template {}{template}",
            received.show(),
            provider.base_path()
        ))
    };
    if got.len() != expected.len() {
        return mismatch(format!(
            "{} path segments instead of {}",
            got.len(),
            expected.len()
        ));
    }
    for (want, got) in expected.iter().zip(got) {
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            None if want.as_bytes() == got => {}
            None => return mismatch(format!("segment {:?} instead of {want:?}", lossy(got))),
            Some(name) => {
                let Some((_, value)) = params.iter().find(|(n, _)| *n == name) else {
                    return mismatch(format!("no value given for {{{name}}}"));
                };
                match decode_segment(got) {
                    Ok(decoded) if decoded == value.as_bytes() => {}
                    Ok(decoded) => {
                        return mismatch(format!(
                            "{{{name}}} decodes to {:?}, not to {value:?}",
                            lossy(&decoded)
                        ));
                    }
                    Err(why) => return mismatch(format!("{{{name}}}: {why}")),
                }
            }
        }
    }
    Ok(())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes a segment strictly: a `%` must start a two-digit escape (a literal `%` travels as
/// `%25`), and every other byte must be a `pchar` (unreserved, sub-delims, `:`, `@`), the only
/// characters that mean the same to every URL parser and server.
fn decode_segment(segment: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoded = Vec::with_capacity(segment.len());
    let mut i = 0;
    while i < segment.len() {
        let b = segment[i];
        if b == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(format!("a `%` at byte {i} that starts no escape"));
            };
            decoded.push(byte);
            i += 3;
        } else if b.is_ascii() && stays_literal(b as char) {
            decoded.push(b);
            i += 1;
        } else {
            return Err(format!("byte {b:#04x} at {i} sent unencoded"));
        }
    }
    Ok(decoded)
}

// ---------------------------------------------------------------------------------------------
// The clients.

fn policy() -> RequestPolicy {
    // One attempt per call, so a call makes at most one request.
    let mut policy = RequestPolicy::default();
    policy.retry = RetryPolicy::disabled();
    policy
}

struct Clients {
    http: edgekv::reqwest::Client,
    fastly: fastly::Client,
    fastly_raw: fastly::raw::Client,
    cloudflare_raw: cloudflare::raw::Client,
}

impl Clients {
    fn new(recorder: &Recorder) -> Clients {
        // One connection pool for every client, so the loop reuses a few kept-alive connections.
        let http = edgekv::http::client_builder().build().unwrap();
        let fastly = fastly::Client::builder("fastly-token")
            .base_url(&recorder.base)
            .http_client(http.clone())
            .policy(policy())
            .build()
            .unwrap();
        let transport = |c| edgekv::transport::Transport::new(c).unwrap();
        let fastly_raw = fastly::raw::Client::new_with_client(
            &recorder.base,
            http.clone(),
            transport(Credential::FastlyToken("fastly-token".into())),
        );
        let cloudflare_raw = cloudflare::raw::Client::new_with_client(
            &recorder.cloudflare_base(),
            http.clone(),
            transport(Credential::CloudflareToken("cf-token".into())),
        );
        Clients {
            http,
            fastly,
            fastly_raw,
            cloudflare_raw,
        }
    }

    fn cloudflare(&self, recorder: &Recorder, account: &str) -> Result<cloudflare::Client, Error> {
        cloudflare::Client::builder("cf-token", account)
            .base_url(recorder.cloudflare_base())
            .http_client(self.http.clone())
            .policy(policy())
            .build()
    }
}

/// A raw value stream read to its end, its error in progenitor's type.
async fn drain_raw(
    stream: fastly::raw::ByteStream,
) -> Result<(), fastly::raw::Error<std::convert::Infallible>> {
    stream
        .into_inner()
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(fastly::raw::Error::ResponseBodyError)
}

/// Raw calls whose error types differ, drained and brought to one `Classify` type.
fn raw_outcome<T, E: std::fmt::Debug>(result: Result<T, fastly::raw::Error<E>>) -> Outcome {
    result.classify()
}

impl Classify for Outcome {
    fn classify(self) -> Outcome {
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// Every operation with a key in its path, for `key`, through both facades (the Cloudflare one
/// twice: URL-decoding namespace and literal namespace) and both raw clients.
async fn every_key_operation(chk: &mut Checker, c: &Clients, cf: &cloudflare::Client, key: &str) {
    let f = Provider::Fastly;
    let fp = [("store_id", STORE), ("key", key)];
    let refused = fastly_facade_refuses(key);
    let store = c.fastly.store(STORE);
    chk.run(f, "kv_store_get_item", Via::Facade, &fp, refused, async {
        if let Some(item) = store.get(key).await? {
            item.bytes().await?;
        }
        Ok::<_, Error>(())
    })
    .await;
    let put = store.put(key, "v", fastly::PutOptions::new());
    chk.run(f, "kv_store_upsert_item", Via::Facade, &fp, refused, put)
        .await;
    let delete = store.delete(key, fastly::DeleteOptions::new());
    chk.run(f, "kv_store_delete_item", Via::Facade, &fp, refused, delete)
        .await;

    let refused = raw_refuses(key);
    let raw = &c.fastly_raw;
    chk.run(f, "kv_store_get_item", Via::Raw, &fp, refused, async {
        match raw.kv_store_get_item(STORE, key).await {
            Ok(value) => raw_outcome(drain_raw(value.into_inner()).await),
            Err(e) => raw_outcome::<(), _>(Err(e)),
        }
    })
    .await;
    let none = None;
    let put = raw.kv_store_upsert_item(STORE, key, none, none, none, none, None, None, None, "v");
    chk.run(f, "kv_store_upsert_item", Via::Raw, &fp, refused, put)
        .await;
    let delete = raw.kv_store_delete_item(STORE, key, None, None);
    chk.run(f, "kv_store_delete_item", Via::Raw, &fp, refused, delete)
        .await;

    let cp = [
        ("account_id", ACCOUNT),
        ("namespace_id", NAMESPACE),
        ("key_name", key),
    ];
    // Told up front that the namespace URL-decodes keys: otherwise the handle would look it up
    // with a request of its own the first time a key needs encoding.
    let decoding = cf.namespace(NAMESPACE).with_url_encoding(true);
    let literal = cf.namespace(NAMESPACE).with_url_encoding(false);
    for (namespace, refused, via) in [
        (&decoding, cloudflare_facade_refuses(key), Via::Facade),
        (&literal, literal_namespace_refuses(key), Via::FacadeLiteral),
    ] {
        cloudflare_key_calls(chk, namespace, key, &cp, refused, via).await;
    }

    let refused = raw_refuses(key);
    let raw = &c.cloudflare_raw;
    let cf = Provider::Cloudflare;
    chk.run(cf, "value_get", Via::Raw, &cp, refused, async {
        match raw.value_get(ACCOUNT, NAMESPACE, key).await {
            Ok(value) => raw_outcome(drain_raw(value.into_inner()).await),
            Err(e) => raw_outcome::<(), _>(Err(e)),
        }
    })
    .await;
    let put = raw.value_put(ACCOUNT, NAMESPACE, key, None, None, "v");
    chk.run(cf, "value_put", Via::Raw, &cp, refused, put).await;
    let delete = raw.value_delete(ACCOUNT, NAMESPACE, key);
    chk.run(cf, "value_delete", Via::Raw, &cp, refused, delete)
        .await;
    let metadata = raw.metadata_get(ACCOUNT, NAMESPACE, key);
    chk.run(cf, "metadata_get", Via::Raw, &cp, refused, metadata)
        .await;
}

/// The Cloudflare facade's calls that take a key; `via` says which handle this is.
async fn cloudflare_key_calls(
    chk: &mut Checker,
    namespace: &cloudflare::Namespace,
    key: &str,
    params: &[(&str, &str)],
    refused: bool,
    via: Via,
) {
    let cf = Provider::Cloudflare;
    chk.run(cf, "value_get", via, params, refused, async {
        if let Some(value) = namespace.get(key).await? {
            value.bytes().await?;
        }
        Ok::<_, Error>(())
    })
    .await;
    let put = namespace.put(key, "v", cloudflare::PutOptions::new());
    chk.run(cf, "value_put", via, params, refused, put).await;
    // With metadata the put is the hand-written multipart request.
    let multipart_via = match via {
        Via::Facade => Via::FacadeMultipart,
        other => other,
    };
    let options = cloudflare::PutOptions::new().metadata(serde_json::json!({"m": 1}));
    let put = namespace.put(key, "v", options);
    chk.run(cf, "value_put", multipart_via, params, refused, put)
        .await;
    let delete = namespace.delete(key);
    chk.run(cf, "value_delete", via, params, refused, delete)
        .await;
    let metadata = namespace.metadata(key);
    chk.run(cf, "metadata_get", via, params, refused, metadata)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_stays_in_its_segment_or_is_refused_before_sending() {
    let started = Instant::now();
    let keys = keys(&KEY_SEEDS, KEYS_PER_SEED);
    let recorder = Recorder::start().await;
    let clients = Clients::new(&recorder);
    let cf = clients.cloudflare(&recorder, ACCOUNT).unwrap();
    let mut chk = Checker::new(recorder);
    for key in &keys {
        every_key_operation(&mut chk, &clients, &cf, key).await;
    }
    eprintln!(
        "{} keys, {} calls, {} requests in {:?}",
        keys.len(),
        chk.calls,
        chk.requests,
        started.elapsed()
    );
    chk.assert_no_failures("keys");
    // Every operation with a key in its path, through each client and handle kind.
    chk.assert_exercised(|param| !ID_PARAMS.contains(&param));
    for via in [Via::FacadeMultipart, Via::FacadeLiteral] {
        let op = (Provider::Cloudflare, "value_put", via);
        assert!(chk.exercised.contains(&op), "never exercised: {op:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Ids.

/// Which id is under test; the others are plain.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Account,
    Namespace,
}

/// Every Fastly operation with a store id in its path, for the store `id`.
async fn every_store_operation(chk: &mut Checker, c: &Clients, id: &str) {
    let f = Provider::Fastly;
    let p = [("store_id", id), ("key", KEY)];
    let refused = unaddressable(id);
    let client = &c.fastly;
    let store = client.store(id);
    let get = client.get_store(id);
    chk.run(f, "kv_store_get", Via::Facade, &p, refused, get)
        .await;
    let rename = client.rename_store(id, "n");
    chk.run(f, "kv_store_put", Via::Facade, &p, refused, rename)
        .await;
    let delete = client.delete_store(id);
    chk.run(f, "kv_store_delete", Via::Facade, &p, refused, delete)
        .await;
    chk.run(
        f,
        "kv_store_list_item_keys",
        Via::Facade,
        &p,
        refused,
        async {
            store
                .keys(fastly::ListKeys::new())
                .try_collect::<Vec<_>>()
                .await
        },
    )
    .await;
    chk.run(f, "kv_store_get_item", Via::Facade, &p, refused, async {
        if let Some(item) = store.get(KEY).await? {
            item.bytes().await?;
        }
        Ok::<_, Error>(())
    })
    .await;
    let put = store.put(KEY, "v", fastly::PutOptions::new());
    chk.run(f, "kv_store_upsert_item", Via::Facade, &p, refused, put)
        .await;
    let delete = store.delete(KEY, fastly::DeleteOptions::new());
    chk.run(f, "kv_store_delete_item", Via::Facade, &p, refused, delete)
        .await;
    let entries = [fastly::BulkEntry::new(KEY, "v")];
    let options = fastly::BulkOptions::default();
    let batch = store.bulk_write(entries, &options);
    chk.run(f, "kv_store_batch", Via::Facade, &p, refused, batch)
        .await;

    let refused = raw_refuses(id);
    let raw = &c.fastly_raw;
    let body = fastly::raw::types::KvStoreRequestCreateOrUpdate {
        name: "n".to_string(),
    };
    let get = raw.kv_store_get(id);
    chk.run(f, "kv_store_get", Via::Raw, &p, refused, get).await;
    let rename = raw.kv_store_put(id, &body);
    chk.run(f, "kv_store_put", Via::Raw, &p, refused, rename)
        .await;
    let delete = raw.kv_store_delete(id);
    chk.run(f, "kv_store_delete", Via::Raw, &p, refused, delete)
        .await;
    let list = raw.kv_store_list_item_keys(id, None, None, None, None);
    chk.run(f, "kv_store_list_item_keys", Via::Raw, &p, refused, list)
        .await;
    chk.run(f, "kv_store_get_item", Via::Raw, &p, refused, async {
        match raw.kv_store_get_item(id, KEY).await {
            Ok(value) => raw_outcome(drain_raw(value.into_inner()).await),
            Err(e) => raw_outcome::<(), _>(Err(e)),
        }
    })
    .await;
    let put = raw.kv_store_upsert_item(id, KEY, None, None, None, None, None, None, None, "v");
    chk.run(f, "kv_store_upsert_item", Via::Raw, &p, refused, put)
        .await;
    let delete = raw.kv_store_delete_item(id, KEY, None, None);
    chk.run(f, "kv_store_delete_item", Via::Raw, &p, refused, delete)
        .await;
}

/// Every Cloudflare operation with the `role` id in its path, for the id `id`.
async fn every_cloudflare_id_operation(
    chk: &mut Checker,
    c: &Clients,
    recorder: &Recorder,
    role: Role,
    id: &str,
) {
    let cf = Provider::Cloudflare;
    let (account, namespace_id, param) = match role {
        Role::Account => (id, NAMESPACE, "account_id"),
        Role::Namespace => (ACCOUNT, id, "namespace_id"),
    };
    let p = [
        ("account_id", account),
        ("namespace_id", namespace_id),
        ("key_name", KEY),
    ];
    let uses = |op: &str| cf.uses(op, param);
    let refused = unaddressable(id);
    match c.cloudflare(recorder, account) {
        Ok(client) => {
            let client = &client;
            let namespace = client.namespace(namespace_id).with_url_encoding(true);
            if uses("namespace_list") {
                chk.run(cf, "namespace_list", Via::Facade, &p, refused, async {
                    client.namespaces(None).try_collect::<Vec<_>>().await
                })
                .await;
            }
            if uses("namespace_create") {
                let create = client.create_namespace("t");
                chk.run(cf, "namespace_create", Via::Facade, &p, refused, create)
                    .await;
            }
            let get = client.get_namespace(namespace_id);
            chk.run(cf, "namespace_get", Via::Facade, &p, refused, get)
                .await;
            let rename = client.rename_namespace(namespace_id, "t");
            chk.run(cf, "namespace_rename", Via::Facade, &p, refused, rename)
                .await;
            let delete = client.delete_namespace(namespace_id);
            chk.run(cf, "namespace_delete", Via::Facade, &p, refused, delete)
                .await;
            chk.run(cf, "keys_list", Via::Facade, &p, refused, async {
                let keys = namespace.keys(cloudflare::ListKeys::new());
                keys.try_collect::<Vec<_>>().await
            })
            .await;
            cloudflare_key_calls(chk, &namespace, KEY, &p, refused, Via::Facade).await;
            let options = cloudflare::BulkOptions::default();
            let entries = [cloudflare::BulkEntry::text(KEY, "v")];
            let write = namespace.bulk_write(entries, &options);
            chk.run(cf, "bulk_write", Via::Facade, &p, refused, write)
                .await;
            let delete = namespace.bulk_delete([KEY], &options);
            chk.run(cf, "bulk_delete", Via::Facade, &p, refused, delete)
                .await;
            let get = namespace.bulk_get([KEY], cloudflare::BulkGetOptions::default());
            chk.run(cf, "bulk_get", Via::Facade, &p, refused, get).await;
        }
        // A client may refuse an account id when it is built: the same refusal, earlier.
        Err(Error::InvalidInput(_)) if refused && chk.recorder.take().is_empty() => {}
        Err(e) => chk.failures.push(format!(
            "Cloudflare client for account {account:?}: building failed: {e}"
        )),
    }

    let refused = raw_refuses(id);
    let raw = &c.cloudflare_raw;
    let title = cloudflare::raw::types::NamespaceTitle {
        title: "t".to_string(),
    };
    if uses("namespace_list") {
        let list = raw.namespace_list(account, None, None, None, None);
        chk.run(cf, "namespace_list", Via::Raw, &p, refused, list)
            .await;
    }
    if uses("namespace_create") {
        let create = raw.namespace_create(account, &title);
        chk.run(cf, "namespace_create", Via::Raw, &p, refused, create)
            .await;
    }
    let get = raw.namespace_get(account, namespace_id);
    chk.run(cf, "namespace_get", Via::Raw, &p, refused, get)
        .await;
    let rename = raw.namespace_rename(account, namespace_id, &title);
    chk.run(cf, "namespace_rename", Via::Raw, &p, refused, rename)
        .await;
    let delete = raw.namespace_delete(account, namespace_id);
    chk.run(cf, "namespace_delete", Via::Raw, &p, refused, delete)
        .await;
    let list = raw.keys_list(account, namespace_id, None, None, None);
    chk.run(cf, "keys_list", Via::Raw, &p, refused, list).await;
    chk.run(cf, "value_get", Via::Raw, &p, refused, async {
        match raw.value_get(account, namespace_id, KEY).await {
            Ok(value) => raw_outcome(drain_raw(value.into_inner()).await),
            Err(e) => raw_outcome::<(), _>(Err(e)),
        }
    })
    .await;
    let put = raw.value_put(account, namespace_id, KEY, None, None, "v");
    chk.run(cf, "value_put", Via::Raw, &p, refused, put).await;
    let delete = raw.value_delete(account, namespace_id, KEY);
    chk.run(cf, "value_delete", Via::Raw, &p, refused, delete)
        .await;
    let metadata = raw.metadata_get(account, namespace_id, KEY);
    chk.run(cf, "metadata_get", Via::Raw, &p, refused, metadata)
        .await;
    let items = cloudflare::raw::types::BulkWrite(vec![cloudflare::raw::types::BulkWriteItem {
        base64: None,
        expiration: None,
        expiration_ttl: None,
        key: KEY.to_string(),
        metadata: None,
        value: "v".to_string(),
    }]);
    let write = raw.bulk_write(account, namespace_id, &items);
    chk.run(cf, "bulk_write", Via::Raw, &p, refused, write)
        .await;
    let keys = cloudflare::raw::types::BulkDelete(vec![KEY.to_string()]);
    let delete = raw.bulk_delete(account, namespace_id, &keys);
    chk.run(cf, "bulk_delete", Via::Raw, &p, refused, delete)
        .await;
    let request = cloudflare::raw::types::BulkGetRequest {
        keys: vec![KEY.to_string()],
        type_: None,
        with_metadata: None,
    };
    let get = raw.bulk_get(account, namespace_id, &request);
    chk.run(cf, "bulk_get", Via::Raw, &p, refused, get).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_stays_in_its_segment_or_is_refused_before_sending() {
    let started = Instant::now();
    // Ids are drawn like keys; the long ones matter less here (ids have no length limit) but
    // show that nothing else limits them.
    let ids = keys(&ID_SEEDS, IDS_PER_SEED);
    let recorder = Recorder::start().await;
    let clients = Clients::new(&recorder);
    let mut chk = Checker::new(recorder.clone());
    for id in &ids {
        every_store_operation(&mut chk, &clients, id).await;
        for role in [Role::Account, Role::Namespace] {
            every_cloudflare_id_operation(&mut chk, &clients, &recorder, role, id).await;
        }
    }
    eprintln!(
        "{} ids, {} calls, {} requests in {:?}",
        ids.len(),
        chk.calls,
        chk.requests,
        started.elapsed()
    );
    chk.assert_no_failures("ids");
    chk.assert_exercised(|param| ID_PARAMS.contains(&param));
    let multipart = (Provider::Cloudflare, "value_put", Via::FacadeMultipart);
    assert!(
        chk.exercised.contains(&multipart),
        "never exercised: {multipart:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The traversals of the issue, each by name.

/// A Fastly client and a Cloudflare client (base URL ending in `/client/v4`) on a fresh recorder.
async fn regression_clients() -> (Recorder, fastly::Client, cloudflare::Client) {
    let recorder = Recorder::start().await;
    let clients = Clients::new(&recorder);
    let cf = clients.cloudflare(&recorder, ACCOUNT).unwrap();
    (recorder, clients.fastly, cf)
}

/// The request targets a call sent, answered as `op` would be.
async fn sent<O>(
    recorder: &Recorder,
    provider: Provider,
    op: &str,
    call: impl Future<Output = O>,
) -> (O, Vec<String>) {
    recorder.answer(answer_for(provider, op));
    let out = call.await;
    let targets = recorder
        .take()
        .iter()
        .map(|r| format!("{} {}", r.method, lossy(&r.target)))
        .collect();
    (out, targets)
}

const CF_VALUES: &str = "/client/v4/accounts/acc0unt1d/storage/kv/namespaces/nam3spac31d/values";

#[tokio::test]
async fn fastly_delete_cannot_climb_to_tokens_self() {
    let (recorder, fastly, _) = regression_clients().await;
    let store = fastly.store(STORE);
    let key = r"..\..\..\..\..\tokens\self";
    let call = store.delete(key, fastly::DeleteOptions::new());
    let (_, targets) = sent(&recorder, Provider::Fastly, "kv_store_delete_item", call).await;
    assert_eq!(
        targets,
        [
            "DELETE /resources/stores/kv/st0re1d/keys/..%5C..%5C..%5C..%5C..%5Ctokens%5Cself?force=true"
        ]
    );
}

#[tokio::test]
async fn fastly_delete_cannot_climb_to_a_service() {
    let (recorder, fastly, _) = regression_clients().await;
    let store = fastly.store(STORE);
    let key = r"..\..\..\..\..\service\SVC";
    let call = store.delete(key, fastly::DeleteOptions::new());
    let (_, targets) = sent(&recorder, Provider::Fastly, "kv_store_delete_item", call).await;
    assert_eq!(
        targets,
        [
            "DELETE /resources/stores/kv/st0re1d/keys/..%5C..%5C..%5C..%5C..%5Cservice%5CSVC?force=true"
        ]
    );
}

const USER_TOKENS: &str = r"..\..\..\..\..\..\..\user\tokens";
const USER_TOKENS_SENT: &str = "..%5C..%5C..%5C..%5C..%5C..%5C..%5Cuser%5Ctokens";

#[tokio::test]
async fn cloudflare_get_cannot_climb_to_user_tokens() {
    let (recorder, _, cf) = regression_clients().await;
    let namespace = cf.namespace(NAMESPACE).with_url_encoding(true);
    let call = async {
        match namespace.get(USER_TOKENS).await {
            Ok(Some(value)) => value.bytes().await.map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let (_, targets) = sent(&recorder, Provider::Cloudflare, "value_get", call).await;
    assert_eq!(targets, [format!("GET {CF_VALUES}/{USER_TOKENS_SENT}")]);
}

#[tokio::test]
async fn cloudflare_put_cannot_climb_to_user_tokens() {
    let (recorder, _, cf) = regression_clients().await;
    let namespace = cf.namespace(NAMESPACE).with_url_encoding(true);
    let call = namespace.put(USER_TOKENS, "body", cloudflare::PutOptions::new());
    let (_, targets) = sent(&recorder, Provider::Cloudflare, "value_put", call).await;
    assert_eq!(targets, [format!("PUT {CF_VALUES}/{USER_TOKENS_SENT}")]);
    // The same through the hand-written multipart request.
    let options = cloudflare::PutOptions::new().metadata(serde_json::json!({"m": 1}));
    let call = namespace.put(USER_TOKENS, "body", options);
    let (_, targets) = sent(&recorder, Provider::Cloudflare, "value_put", call).await;
    assert_eq!(targets, [format!("PUT {CF_VALUES}/{USER_TOKENS_SENT}")]);
}

#[tokio::test]
async fn cloudflare_put_of_a_backslash_key_reaches_that_key() {
    let (recorder, _, cf) = regression_clients().await;
    let namespace = cf.namespace(NAMESPACE).with_url_encoding(true);
    let call = namespace.put(r"x\y", "v", cloudflare::PutOptions::new());
    let (_, targets) = sent(&recorder, Provider::Cloudflare, "value_put", call).await;
    assert_eq!(targets, [format!("PUT {CF_VALUES}/x%5Cy")]);
}

#[tokio::test]
async fn fastly_store_dot_dot_is_refused_before_sending() {
    let (recorder, fastly, _) = regression_clients().await;
    let store = fastly.store("..");
    let call = async {
        match store.get("k").await {
            Ok(Some(item)) => item.bytes().await.map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let (result, targets) = sent(&recorder, Provider::Fastly, "kv_store_get_item", call).await;
    assert!(
        matches!(result, Err(Error::InvalidInput(_))),
        "{result:?}, sent {targets:?}"
    );
    assert!(targets.is_empty(), "{targets:?}");
}

#[tokio::test]
async fn cloudflare_delete_namespace_dot_is_refused_before_sending() {
    let (recorder, _, cf) = regression_clients().await;
    let call = cf.delete_namespace(".");
    let (result, targets) = sent(&recorder, Provider::Cloudflare, "namespace_delete", call).await;
    assert!(
        matches!(result, Err(Error::InvalidInput(_))),
        "{result:?}, sent {targets:?}"
    );
    assert!(targets.is_empty(), "{targets:?}");
}
