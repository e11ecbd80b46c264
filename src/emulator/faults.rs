//! Misbehaving HTTP/1.1 answers, shared by the fault tests and the emulator's fault injection:
//! [`Reply`] says what to do with one request (answer, reset, cut or stall the body, never
//! answer) and [`FaultyServer`] plays a script of them, one per request (the last one repeats),
//! recording every request it saw. Loopback only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A whole response.
    Respond {
        /// The status.
        status: u16,
        /// Headers besides `content-length` and `connection`.
        headers: Vec<(&'static str, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Closes the connection after reading the request, without answering.
    Reset,
    /// Announces `declared` body bytes, sends `sent`, then closes the connection.
    CutBody {
        /// The `content-length` announced.
        declared: usize,
        /// The bytes actually sent.
        sent: Vec<u8>,
    },
    /// Announces `declared` body bytes, sends `sent`, then stays silent.
    StallBody {
        /// The `content-length` announced.
        declared: usize,
        /// The bytes sent before the silence.
        sent: Vec<u8>,
    },
    /// Reads the request and never answers.
    StallHead,
}

impl Reply {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Self {
        Reply::Respond {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Respond {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// An answer with this body and content type.
    pub fn body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply::Respond {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// Adds a header to an answer.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Reply::Respond { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path and query.
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A server that plays a script of [`Reply`]s.
#[derive(Debug)]
pub struct FaultyServer {
    addr: SocketAddr,
    host: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyServer {
    /// Serves `script` on 127.0.0.1.
    ///
    /// # Panics
    /// If no loopback port can be bound (a test set-up failure).
    pub async fn start(script: Vec<Reply>) -> Self {
        Self::start_as("127.0.0.1", script).await
    }

    /// Serves `script` on loopback, named `host` in its URL; panics like [`start`](Self::start) (`localhost` is another host than
    /// `127.0.0.1` to an HTTP client).
    pub async fn start_as(host: &'static str, script: Vec<Reply>) -> Self {
        let script = if script.is_empty() {
            vec![Reply::status(500)]
        } else {
            script
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicUsize::new(0));
        let (script, log) = (Arc::new(script), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (script, log, next) = (script.clone(), log.clone(), next.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let reply = script[n.min(script.len() - 1)].clone();
                    play(stream.into_inner(), reply).await;
                });
            }
        });
        FaultyServer {
            addr,
            host,
            seen,
            task,
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.addr.port())
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests reached the server.
    pub fn attempts(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Reads one request (head and body, by length or chunked) off a connection.
pub async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        stream.read_exact(&mut body).await.ok()?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            stream.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

/// Plays `reply` on a connection whose request was read.
pub async fn play(mut stream: TcpStream, reply: Reply) {
    let head = |status: u16, headers: &[(&str, String)], len: usize| {
        let mut head =
            format!("HTTP/1.1 {status} X\r\ncontent-length: {len}\r\nconnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    };
    match reply {
        Reply::Respond {
            status,
            headers,
            body,
        } => {
            let _ = stream.write_all(&head(status, &headers, body.len())).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Reset => drop(stream),
        Reply::CutBody { declared, sent } => {
            let _ = stream
                .write_all(&head(200, &[("generation", "1".into())], declared))
                .await;
            let _ = stream.write_all(&sent).await;
            drop(stream);
        }
        Reply::StallBody { declared, sent } => {
            let _ = stream
                .write_all(&head(200, &[("generation", "1".into())], declared))
                .await;
            let _ = stream.write_all(&sent).await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Reply::StallHead => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
}
