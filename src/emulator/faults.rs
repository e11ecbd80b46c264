//! Misbehaving HTTP/1.1 answers, played by the emulator's fault injection and by the test
//! suites' scripted servers (`tests/it/support/`): [`Reply`] says what to do with one request
//! (answer, reset, cut or stall the body, never answer), [`read_request`] reads one request off a
//! connection and [`play`] plays a reply on it. Loopback only.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

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
