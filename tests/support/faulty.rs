//! A misbehaving HTTP/1.1 server for fault tests: it plays a script of replies, one per request
//! (the last one repeats), and records every request it saw. Loopback only.

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
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Closes the connection after reading the request, without answering.
    Reset,
    /// Announces `declared` body bytes, sends `sent`, then closes the connection.
    CutBody { declared: usize, sent: Vec<u8> },
    /// Announces `declared` body bytes, sends `sent`, then stays silent.
    StallBody { declared: usize, sent: Vec<u8> },
    /// Reads the request and never answers.
    StallHead,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply::Respond {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Respond {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Reply::Respond {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
        }
    }

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
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

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
    pub async fn start(script: Vec<Reply>) -> Self {
        Self::start_as("127.0.0.1", script).await
    }

    /// Serves `script` on loopback, named `host` in its URL (`localhost` is another host than
    /// `127.0.0.1` to an HTTP client).
    pub async fn start_as(host: &'static str, script: Vec<Reply>) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
                    log.lock().unwrap().push(request);
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
        self.seen.lock().unwrap().clone()
    }

    /// How many requests reached the server.
    pub fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
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

async fn play(mut stream: TcpStream, reply: Reply) {
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
