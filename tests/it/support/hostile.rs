//! Scripted hostile HTTP/1.1 servers for the hostile-answer suite (`hostile_answers.rs`).
//!
//! Every answer is written by hand, byte for byte, so its framing (`Content-Length`, chunked, or
//! neither), its pace and its size are exactly what the script says, however wrong. Bodies are
//! produced lazily from a short pattern: a server announcing 1 GiB, or never ending, costs a
//! 64 KiB buffer. Every answer stops by itself after [`MAX_BYTES`], after [`MAX_TIME`], or when
//! the peer closes; dropping the server stops every connection it still serves. Loopback only.
//!
//! Self-contained (no crate under test, no other support module), so it can move unchanged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The most bytes one answer writes before the server stops it.
pub const MAX_BYTES: u64 = 2 << 30;
/// The longest one answer runs before the server stops it.
pub const MAX_TIME: Duration = Duration::from_secs(30);
/// Longest silence while the server reads a request body; then it answers with what it has.
const REQUEST_IDLE: Duration = Duration::from_secs(1);
/// The most request body bytes kept (the rest is read and dropped).
const KEPT_REQUEST_BODY: usize = 4 << 20;
/// Size of one write of a lazily produced body.
const BLOCK: usize = 64 * 1024;

/// A request as the server read it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The request target (path and query), as sent.
    pub target: String,
    /// The headers, in order (values decoded lossily).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked; at most 4 MiB kept.
    pub body: Vec<u8>,
    /// Whether the body arrived whole (as long as announced, or a chunked body's last chunk).
    pub body_complete: bool,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.target.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// The target, percent-decoded (`+` left as is).
    pub fn decoded_target(&self) -> String {
        percent_decode(&self.target)
    }
}

/// Decodes `%XX` escapes, lossily as UTF-8.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An answer's body and framing.
#[derive(Clone, Debug)]
pub enum Body {
    /// Sent whole, with its `Content-Length`; the connection is kept for the next request.
    Whole(Vec<u8>),
    /// `Content-Length: len`; `prefix`, then `fill` repeated, produced as written.
    Sized {
        /// The length announced.
        len: u64,
        /// The first bytes.
        prefix: Vec<u8>,
        /// The pattern repeated after them.
        fill: Vec<u8>,
    },
    /// Chunked and never ending: `prefix`, then `fill` repeated forever.
    Endless {
        /// The first bytes.
        prefix: Vec<u8>,
        /// The pattern repeated after them (whole repetitions per chunk).
        fill: Vec<u8>,
    },
    /// One byte every `every`, cycling through `bytes`: `declared` bytes announced in
    /// `Content-Length`, or (`None`) chunked, one byte per chunk, never ending.
    Drip {
        /// The bytes, repeated as needed.
        bytes: Vec<u8>,
        /// The pause after each byte.
        every: Duration,
        /// The `Content-Length`, or chunked.
        declared: Option<u64>,
    },
    /// Neither `Content-Length` nor chunked: `bytes`, then the connection closes, so the peer
    /// cannot tell whether the body is whole.
    CloseDelimited(Vec<u8>),
    /// `Content-Length: declared`, then only `sent`, then the connection closes.
    Cut {
        /// The length announced.
        declared: u64,
        /// The bytes sent before closing.
        sent: Vec<u8>,
    },
    /// No answer at all: the connection closes once the request is read.
    Hangup,
    /// No answer at all: the connection stays open, silent, until the server stops it.
    Silence,
}

/// What the server answers to one request.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers besides the framing ones, as raw bytes (so they can be anything).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Body,
}

impl Answer {
    /// An answer with this status and body.
    pub fn new(status: u16, body: Body) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// An empty answer.
    pub fn empty(status: u16) -> Self {
        Answer::new(status, Body::Whole(Vec::new()))
    }

    /// A whole JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Answer::new(status, Body::Whole(body.to_string().into_bytes()))
            .header("content-type", "application/json")
    }

    /// A whole answer of these bytes.
    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Answer::new(status, Body::Whole(body.into()))
    }

    /// Closes the connection without answering.
    pub fn hangup() -> Self {
        Answer::new(0, Body::Hangup)
    }

    /// Never answers (the connection stays open until the server stops it after 30 s).
    pub fn silence() -> Self {
        Answer::new(0, Body::Silence)
    }

    /// Adds a header, its value as raw bytes (non-UTF-8 allowed; CR and LF are the caller's
    /// problem).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Adds a JSON content type.
    pub fn json_type(self) -> Self {
        self.header("content-type", "application/json")
    }

    fn keeps_connection(&self) -> bool {
        matches!(self.body, Body::Whole(_))
            && !self.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case(b"close")
            })
    }
}

/// A script: the answer to a request, given it and its index among every request the server
/// read (from 0).
pub type Script = dyn Fn(&Request, usize) -> Answer + Send + Sync;

/// A server playing a script on 127.0.0.1.
pub struct HostileServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        // The accept task owns every connection's task: aborting it drops them all.
        self.task.abort();
    }
}

impl HostileServer {
    /// Serves `script`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(
        script: impl Fn(&Request, usize) -> Answer + Send + Sync + 'static,
    ) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { return };
                        let _ = stream.set_nodelay(true);
                        let (read, write) = stream.into_split();
                        connections.spawn(serve(read, write, script.clone(), log.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        HostileServer {
            addr,
            requests,
            task,
        }
    }

    /// Serves the same answer to every request.
    pub async fn always(answer: Answer) -> HostileServer {
        HostileServer::start(move |_, _| answer.clone()).await
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests the server read.
    pub fn count(&self) -> usize {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// A loopback URL nothing listens on (connections are refused).
pub async fn refusing_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free loopback port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    format!("http://{addr}")
}

async fn serve(
    read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Request>>>,
) {
    let mut reader = BufReader::new(read);
    loop {
        let Some(request) = read_request(&mut reader).await else {
            return;
        };
        let complete = request.body_complete;
        let index = {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(request.clone());
            log.len() - 1
        };
        let answer = script(&request, index);
        let keep = answer.keeps_connection() && complete;
        let written = tokio::time::timeout(MAX_TIME, write_answer(&mut write, answer)).await;
        if !matches!(written, Ok(Ok(()))) || !keep {
            // A graceful close (FIN), so a close-delimited body reads as ended, not reset.
            let _ = write.shutdown().await;
            return;
        }
    }
}

/// Reads one request; `None` when the peer closed or sent no request line.
async fn read_request(reader: &mut BufReader<OwnedReadHalf>) -> Option<Request> {
    let mut line = String::new();
    let mut head_bytes = 0usize;
    read_line(reader, &mut line, &mut head_bytes).await?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        read_line(reader, &mut line, &mut head_bytes).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
        body_complete: true,
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = request
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = Vec::new();
    request.body_complete = if chunked {
        read_chunked(reader, &mut body).await
    } else if let Some(length) = length {
        read_exactly(reader, length, &mut body).await
    } else {
        true
    };
    request.body = body;
    Some(request)
}

async fn read_line(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut String,
    head_bytes: &mut usize,
) -> Option<()> {
    let mut raw = Vec::new();
    let n = reader.read_until(b'\n', &mut raw).await.ok()?;
    *head_bytes += n;
    if n == 0 || *head_bytes > 256 * 1024 {
        return None;
    }
    line.push_str(&String::from_utf8_lossy(&raw));
    Some(())
}

/// Reads `length` body bytes, keeping the first 4 MiB; false when the peer went silent or away
/// first.
async fn read_exactly(
    reader: &mut BufReader<OwnedReadHalf>,
    length: u64,
    body: &mut Vec<u8>,
) -> bool {
    let mut left = length;
    let mut buffer = vec![0u8; BLOCK];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        match tokio::time::timeout(REQUEST_IDLE, reader.read(&mut buffer[..want])).await {
            Ok(Ok(n)) if n > 0 => {
                keep(body, &buffer[..n]);
                left -= n as u64;
            }
            _ => return false,
        }
    }
    true
}

/// Reads a chunked body; false when the peer went silent or away, or the framing is broken.
async fn read_chunked(reader: &mut BufReader<OwnedReadHalf>, body: &mut Vec<u8>) -> bool {
    loop {
        let mut line = Vec::new();
        match tokio::time::timeout(REQUEST_IDLE, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
        let text = String::from_utf8_lossy(&line);
        let size = text.trim().split(';').next().unwrap_or("");
        let Ok(size) = u64::from_str_radix(size.trim(), 16) else {
            return false;
        };
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = Vec::new();
                match tokio::time::timeout(REQUEST_IDLE, reader.read_until(b'\n', &mut trailer))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => {
                        if trailer == b"\r\n" || trailer == b"\n" {
                            return true;
                        }
                    }
                    _ => return false,
                }
            }
        }
        if !read_exactly(reader, size, body).await {
            return false;
        }
        let mut crlf = Vec::new();
        match tokio::time::timeout(REQUEST_IDLE, reader.read_until(b'\n', &mut crlf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
}

fn keep(body: &mut Vec<u8>, bytes: &[u8]) {
    let room = KEPT_REQUEST_BODY.saturating_sub(body.len());
    body.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// `fill` repeated to about `BLOCK` bytes, in whole repetitions.
fn block_of(fill: &[u8]) -> Vec<u8> {
    let fill = if fill.is_empty() { &b"x"[..] } else { fill };
    let times = (BLOCK / fill.len()).max(1);
    fill.repeat(times)
}

async fn write_answer(write: &mut OwnedWriteHalf, answer: Answer) -> std::io::Result<()> {
    match answer.body {
        Body::Hangup => return Ok(()),
        Body::Silence => {
            tokio::time::sleep(MAX_TIME).await;
            return Ok(());
        }
        _ => {}
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status)).into_bytes();
    for (name, value) in &answer.headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    let framing = match &answer.body {
        Body::Whole(bytes) => format!("content-length: {}\r\n", bytes.len()),
        Body::Sized { len, .. } => format!("content-length: {len}\r\nconnection: close\r\n"),
        Body::Drip {
            declared: Some(len),
            ..
        } => format!("content-length: {len}\r\nconnection: close\r\n"),
        Body::Endless { .. } | Body::Drip { declared: None, .. } => {
            "transfer-encoding: chunked\r\nconnection: close\r\n".to_string()
        }
        Body::Cut { declared, .. } => {
            format!("content-length: {declared}\r\nconnection: close\r\n")
        }
        Body::CloseDelimited(_) => "connection: close\r\n".to_string(),
        Body::Hangup | Body::Silence => String::new(),
    };
    head.extend_from_slice(framing.as_bytes());
    head.extend_from_slice(b"\r\n");
    write.write_all(&head).await?;
    match answer.body {
        Body::Whole(bytes) | Body::CloseDelimited(bytes) | Body::Cut { sent: bytes, .. } => {
            write.write_all(&bytes).await?
        }
        Body::Sized { len, prefix, fill } => {
            let limit = len.min(MAX_BYTES);
            let first = &prefix[..prefix
                .len()
                .min(usize::try_from(limit).unwrap_or(usize::MAX))];
            write.write_all(first).await?;
            let mut written = first.len() as u64;
            let block = block_of(&fill);
            while written < limit {
                let n = block
                    .len()
                    .min(usize::try_from(limit - written).unwrap_or(usize::MAX));
                write.write_all(&block[..n]).await?;
                written += n as u64;
            }
        }
        Body::Endless { prefix, fill } => {
            write_chunk(write, &prefix).await?;
            let mut written = prefix.len() as u64;
            let block = block_of(&fill);
            while written < MAX_BYTES {
                write_chunk(write, &block).await?;
                written += block.len() as u64;
            }
        }
        Body::Drip {
            bytes,
            every,
            declared,
        } => {
            let bytes = if bytes.is_empty() {
                b"x".to_vec()
            } else {
                bytes
            };
            let total = declared.unwrap_or(u64::MAX).min(MAX_BYTES);
            let mut i = 0u64;
            while i < total {
                let byte = [bytes[(i % bytes.len() as u64) as usize]];
                if declared.is_some() {
                    write.write_all(&byte).await?;
                } else {
                    write_chunk(write, &byte).await?;
                }
                write.flush().await?;
                i += 1;
                tokio::time::sleep(every).await;
            }
        }
        Body::Hangup | Body::Silence => {}
    }
    write.flush().await
}

async fn write_chunk(write: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
    chunk.extend_from_slice(bytes);
    chunk.extend_from_slice(b"\r\n");
    write.write_all(&chunk).await
}

/// Hostile bodies of the two APIs.
pub mod bodies {
    use super::Body;

    /// 1 GiB of filler behind a `Content-Length`.
    pub fn one_gib() -> Body {
        Body::Sized {
            len: 1 << 30,
            prefix: b"<html><body>".to_vec(),
            fill: b"0123456789abcdef".to_vec(),
        }
    }

    /// A Cloudflare error envelope whose `errors` list never closes.
    pub fn endless_cloudflare_error() -> Body {
        Body::Endless {
            prefix: br#"{"success":false,"messages":[],"result":null,"errors":[{"code":10001,"message":"bad"}"#.to_vec(),
            fill: br#",{"code":10001,"message":"bad request, bad request"}"#.to_vec(),
        }
    }

    /// A never-ending HTML-ish error page.
    pub fn endless_text() -> Body {
        Body::Endless {
            prefix: b"<html><body>Service Unavailable".to_vec(),
            fill: b" Service Unavailable".to_vec(),
        }
    }

    /// A Cloudflare key page that never closes.
    pub fn endless_cloudflare_key_page() -> Body {
        Body::Endless {
            prefix: br#"{"success":true,"errors":[],"messages":[],"result":[{"name":"a"}"#.to_vec(),
            fill: br#",{"name":"aaaaaaaaaaaaaaaaaaaaaaaa"}"#.to_vec(),
        }
    }

    /// A Cloudflare namespace page that never closes.
    pub fn endless_cloudflare_namespace_page() -> Body {
        Body::Endless {
            prefix: br#"{"success":true,"errors":[],"messages":[],"result":[{"id":"0f2ac74b498b48028cb68387c421e279","title":"a"}"#.to_vec(),
            fill: br#",{"id":"0f2ac74b498b48028cb68387c421e279","title":"aaaaaaaa"}"#.to_vec(),
        }
    }

    /// A Cloudflare namespace (single JSON answer) whose title never closes.
    pub fn endless_cloudflare_namespace() -> Body {
        Body::Endless {
            prefix: br#"{"success":true,"errors":[],"messages":[],"result":{"id":"0f2ac74b498b48028cb68387c421e279","title":"a"#.to_vec(),
            fill: b"aaaaaaaaaaaaaaaa".to_vec(),
        }
    }

    /// A Fastly key page that never closes.
    pub fn endless_fastly_key_page() -> Body {
        Body::Endless {
            prefix: br#"{"data":["a""#.to_vec(),
            fill: br#","aaaaaaaaaaaaaaaaaaaaaaaa""#.to_vec(),
        }
    }

    /// A Fastly batch answer whose `errors` list never closes.
    pub fn endless_fastly_batch_errors() -> Body {
        Body::Endless {
            prefix: br#"{"errors":[{"code":"bad","reason":"refused"}"#.to_vec(),
            fill: br#",{"code":"bad","reason":"refused, refused"}"#.to_vec(),
        }
    }

    /// A value that never ends (chunked).
    pub fn endless_value() -> Body {
        Body::Endless {
            prefix: Vec::new(),
            fill: b"value bytes, more value bytes, ".to_vec(),
        }
    }
}
