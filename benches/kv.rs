//! Benchmarks of the facades against baselines measured in the same run, on the emulator run
//! out of process (the standalone binary). Results are ratios: absolute times drift on shared
//! machines. See BENCHMARKS.md.
//!
//! Run: `cargo bench --bench kv --features emulator` (add benchmarks' numbers to run only those).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgekv::emulator::DEFAULT_TOKEN;
use edgekv::fastly;
use futures_util::{StreamExt as _, TryStreamExt as _};

/// The emulator binary, started with `args`, stopped on drop.
struct Server {
    child: Child,
    fastly: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgekv-emulator"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the emulator binary starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .expect("the emulator prints its URLs");
        let fastly = first
            .strip_prefix("fastly: ")
            .expect("the Fastly URL comes first")
            .to_string();
        // Keep draining the emulator's output so it never writes to a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server { child, fastly }
    }

    fn fastly(&self) -> fastly::Client {
        let mut policy = edgekv::policy::RequestPolicy::default();
        policy.retry = edgekv::policy::RetryPolicy::disabled();
        fastly::Client::builder(DEFAULT_TOKEN)
            .base_url(&self.fastly)
            .policy(policy)
            .build()
            .expect("a client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `calls` calls of `op`, `concurrency` at a time; returns calls per second.
async fn throughput<F, Fut>(calls: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    futures_util::stream::iter(0..calls)
        .map(&op)
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    calls as f64 / started.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Benchmark 1, per-request overhead: small `get` and `put` through the facade against the same
/// requests made with a bare `reqwest::Client`, at concurrency 1 and 32. Rounds alternate.
async fn overhead(report: &mut Vec<String>) {
    let server = Server::start(&[]);
    let client = server.fastly();
    let store_id = client
        .create_store("bench", None)
        .await
        .expect("a store")
        .id;
    let store = client.store(&store_id);
    store
        .put("small", "0123456789abcdef", fastly::PutOptions::new())
        .await
        .expect("a value");
    let bare = edgekv::http::client_builder().build().expect("a client");
    let url = format!(
        "{}/resources/stores/kv/{store_id}/keys/small",
        server.fastly
    );
    report.push("| 1. overhead | facade ops/s | bare reqwest ops/s | ratio | target |".into());
    report.push("|---|---|---|---|---|".into());
    for concurrency in [1usize, 32] {
        let calls = if concurrency == 1 { 2_000 } else { 8_000 };
        for op in ["get", "put"] {
            let (mut facade, mut baseline) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                let through_facade = throughput(calls, concurrency, |_| async {
                    if op == "get" {
                        store
                            .get("small")
                            .await
                            .expect("get")
                            .expect("found")
                            .bytes()
                            .await
                            .expect("body");
                    } else {
                        store
                            .put("small", "0123456789abcdef", fastly::PutOptions::new())
                            .await
                            .expect("put");
                    }
                });
                facade.push(through_facade.await);
                let through_reqwest = throughput(calls, concurrency, |_| async {
                    let request = if op == "get" {
                        bare.get(&url)
                    } else {
                        bare.put(&url).body("0123456789abcdef")
                    };
                    let response = request
                        .header("fastly-key", DEFAULT_TOKEN)
                        .send()
                        .await
                        .expect("send");
                    assert!(response.status().is_success());
                    response.bytes().await.expect("body");
                });
                baseline.push(through_reqwest.await);
            }
            let (f, b) = (median(facade), median(baseline));
            report.push(format!(
                "| {op} at concurrency {concurrency} | {f:.0} | {b:.0} | {:.3} | ≥ 0.95 |",
                f / b
            ));
        }
    }
}

/// Benchmark 3, listing: 100,000 keys, 20 ms of server latency per page, a consumer spending
/// about as long per page; the default read-ahead against read-ahead off.
async fn listing(report: &mut Vec<String>) {
    let server = Server::start(&["--latency-ms", "20"]);
    let client = server.fastly();
    let store_id = client
        .create_store("listing", None)
        .await
        .expect("a store")
        .id;
    let store = client.store(&store_id);
    let entries = (0..100_000).map(|i| fastly::BulkEntry::new(format!("key/{i:06}"), "v"));
    let written = store
        .bulk_write(entries, &fastly::BulkOptions::default())
        .await
        .expect("a batch");
    assert_eq!(written.written, 100_000);
    let list = |read_ahead: usize| {
        let store = store.clone();
        async move {
            let started = Instant::now();
            let mut pages =
                store.key_pages(fastly::ListKeys::new().limit(1000).read_ahead(read_ahead));
            let mut keys = 0;
            while let Some(page) = pages.try_next().await.expect("a page") {
                keys += page.keys.len();
                tokio::time::sleep(Duration::from_millis(20)).await; // the consumer's work
            }
            assert_eq!(keys, 100_000);
            started.elapsed()
        }
    };
    let lazy = list(0).await;
    let ahead = list(1).await;
    let ratio = ahead.as_secs_f64() / lazy.as_secs_f64();
    report
        .push("| 3. listing 100,000 keys | read-ahead 1 | read-ahead 0 | ratio | target |".into());
    report.push("|---|---|---|---|---|".into());
    report.push(format!(
        "| 100 pages, 20 ms server + 20 ms consumer per page | {:.2} s | {:.2} s | {ratio:.3} | ≤ 0.6 |",
        ahead.as_secs_f64(),
        lazy.as_secs_f64()
    ));
}

fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut report = Vec::new();
    runtime.block_on(async {
        if wanted("1") {
            overhead(&mut report).await;
            report.push(String::new());
        }
        if wanted("3") {
            listing(&mut report).await;
            report.push(String::new());
        }
    });
    println!("{}", report.join("\n"));
}
