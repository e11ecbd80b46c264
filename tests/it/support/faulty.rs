//! The fault suite's misbehaving server: it plays a script of [`Reply`]s, one per request (the
//! last one repeats), recording every request it saw. Test machinery, so it lives here rather
//! than in the library; the replies themselves are the library's (`edgekv::emulator::faults`),
//! which the emulator's fault injection plays too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use edgekv::emulator::faults::{Reply, Seen};
use edgekv::emulator::faults::{play, read_request};
use tokio::io::BufReader;
use tokio::net::TcpListener;

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
