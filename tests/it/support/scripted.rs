//! A loopback server answering each request as a script decides, after reading it whole with
//! the library's misbehaving-server parts (`edgekv::emulator::faults`): any status, body,
//! framing, hang-up or stall, per request.

use std::sync::Arc;

use edgekv::emulator::faults::{Reply, Seen, play, read_request};
use tokio::io::BufReader;
use tokio::net::TcpListener;

/// A loopback server answering each request as `handler` decides, after reading it whole.
pub struct Scripted {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

impl Scripted {
    pub async fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let reply = handler(&request);
                    play(stream.into_inner(), reply).await;
                });
            }
        });
        Scripted { url, task }
    }
}
