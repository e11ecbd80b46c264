//! Benchmarks of the facades against baselines measured in the same run, on the emulator run
//! out of process (the standalone binary). Results are ratios: absolute times drift on shared
//! machines. See BENCHMARKS.md.
//!
//! Run: `cargo bench --bench kv --features emulator` (add benchmarks' numbers to run only those).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgekv::emulator::DEFAULT_TOKEN;
use edgekv::fastly;
use futures_util::{StreamExt as _, TryStreamExt as _};

#[path = "server.rs"]
mod server;
use server::{Server, status_kb};

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

/// Benchmark 1's store: one small value in a new store of `client`'s; returns the store.
async fn small_value_store(client: &fastly::Client, name: &str) -> fastly::Store {
    let store_id = client.create_store(name, None).await.expect("a store").id;
    let store = client.store(&store_id);
    store
        .put("small", SMALL_VALUE, fastly::PutOptions::new())
        .await
        .expect("a value");
    store
}

const SMALL_VALUE: &str = "0123456789abcdef";

/// One call of benchmark 1 through the facade.
async fn facade_call(store: &fastly::Store, op: &str) {
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
        // The same bytes without a copy, as the bare and generated variants send them: a `&str`
        // body is copied (`Body` cannot tell a `'static` one), which costs ≈ 560 instructions
        // here and is the caller's choice, not the client's overhead.
        let value = bytes::Bytes::from_static(SMALL_VALUE.as_bytes());
        store
            .put("small", value, fastly::PutOptions::new())
            .await
            .expect("put");
    }
}

/// The same call made with the generated client alone (no retries, timeouts or tracing), to
/// tell the generated code's cost from the facade's.
async fn generated_call(client: &fastly::Client, store_id: &str, op: &str) {
    let raw = client.raw();
    if op == "get" {
        let mut body = raw
            .kv_store_get_item(store_id, "small")
            .await
            .expect("get")
            .into_inner();
        while let Some(chunk) = body.next().await {
            chunk.expect("body");
        }
    } else {
        raw.kv_store_upsert_item(
            store_id,
            "small",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            SMALL_VALUE,
        )
        .await
        .expect("put");
    }
}

/// The same call made with the bare `reqwest::Client` (built as the facade builds its own).
async fn bare_call(bare: &reqwest::Client, url: &str, op: &str) {
    let request = if op == "get" {
        bare.get(url)
    } else {
        bare.put(url).body(SMALL_VALUE)
    };
    let response = request
        .header("fastly-key", DEFAULT_TOKEN)
        .send()
        .await
        .expect("send");
    assert!(response.status().is_success());
    response.bytes().await.expect("body");
}

/// Benchmark 1, per-request overhead: small `get` and `put` through the facade against the same
/// requests made with a bare `reqwest::Client`, at concurrency 1 and 32. Each round measures
/// both back to back, in alternating order, and gives one ratio; the median ratio is reported,
/// so drift in the shared machine's speed between rounds cancels.
async fn overhead(report: &mut Vec<String>) {
    const ROUNDS: usize = 15;
    let server = Server::start(&[]);
    let client = server.fastly();
    let store = small_value_store(&client, "bench").await;
    let bare = edgekv::http::client_builder().build().expect("a client");
    let url = format!(
        "{}/resources/stores/kv/{}/keys/small",
        server.fastly,
        store.id()
    );
    report.push(
        "| 1. overhead | facade ops/s | bare reqwest ops/s | median ratio of 15 rounds (range) | target |"
            .into(),
    );
    report.push("|---|---|---|---|---|".into());
    for concurrency in [1usize, 32] {
        let calls = if concurrency == 1 { 500 } else { 2_000 };
        for op in ["get", "put"] {
            let facade = || throughput(calls, concurrency, |_| facade_call(&store, op));
            let baseline = || throughput(calls, concurrency, |_| bare_call(&bare, &url, op));
            // Warm both connection pools and the server's paths first.
            facade().await;
            baseline().await;
            let (mut rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                let (f, b) = if round % 2 == 0 {
                    let f = facade().await;
                    (f, baseline().await)
                } else {
                    let b = baseline().await;
                    (facade().await, b)
                };
                rates.push(f);
                bare_rates.push(b);
                ratios.push(f / b);
            }
            let (low, high) = (
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max),
            );
            report.push(format!(
                "| {op} at concurrency {concurrency} | {:.0} | {:.0} | {:.3} ({low:.2}–{high:.2}) | ≥ 0.95 |",
                median(rates),
                median(bare_rates),
                median(ratios),
            ));
        }
    }
    instructions(report, &server).await;
}

/// Benchmark 1's profile, in a child process (run under callgrind by the parent): `calls` calls
/// of `op` at concurrency 1 through `variant`, after the same setup either way.
async fn profile_child(variant: &str, op: &str, calls: usize, fastly_url: &str) {
    let client = fastly::Client::builder(DEFAULT_TOKEN)
        .base_url(fastly_url)
        .build()
        .expect("a client");
    let store = small_value_store(&client, &format!("profile-{}", std::process::id())).await;
    let bare = edgekv::http::client_builder().build().expect("a client");
    let url = format!("{fastly_url}/resources/stores/kv/{}/keys/small", store.id());
    for _ in 0..calls {
        match variant {
            "facade" => facade_call(&store, op).await,
            "generated" => generated_call(&client, store.id(), op).await,
            _ => bare_call(&bare, &url, op).await,
        }
    }
}

/// Instructions the client process executes per call (`valgrind --tool=callgrind`), facade
/// against bare reqwest: unlike wall-clock rates these repeat exactly on a shared machine.
/// Each figure is the difference between runs of 1,200 and 200 calls, so the setup cancels.
async fn instructions(report: &mut Vec<String>, server: &Server) {
    let has_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_valgrind {
        report.push(String::new());
        report.push("(valgrind not found: no instruction counts)".into());
        return;
    }
    let count = |variant: &str, op: &str, calls: usize| -> f64 {
        let out =
            std::env::temp_dir().join(format!("edgekv-bench-{}.callgrind", std::process::id()));
        let status = Command::new("valgrind")
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(std::env::current_exe().expect("this binary"))
            .args(["--profile", variant, op, &calls.to_string(), &server.fastly])
            .stdout(Stdio::null())
            .status()
            .expect("valgrind runs");
        assert!(status.success(), "the profiled child failed");
        let text = std::fs::read_to_string(&out).expect("a callgrind file");
        let _ = std::fs::remove_file(&out);
        text.lines()
            .find_map(|l| {
                l.strip_prefix("totals: ")
                    .or_else(|| l.strip_prefix("summary: "))
            })
            .and_then(|n| n.trim().parse().ok())
            .expect("a callgrind total")
    };
    report.push(String::new());
    report.push(
        "| 1. client instructions per call (callgrind) | facade | generated client alone | bare reqwest | bare ÷ facade | bare ÷ generated |"
            .into(),
    );
    report.push("|---|---|---|---|---|---|".into());
    for op in ["get", "put"] {
        let per_call =
            |variant: &str| (count(variant, op, 1_200) - count(variant, op, 200)) / 1_000.0;
        let (facade, generated, bare) =
            (per_call("facade"), per_call("generated"), per_call("bare"));
        report.push(format!(
            "| {op} | {facade:.0} | {generated:.0} | {bare:.0} | {:.3} | {:.3} |",
            bare / facade,
            bare / generated
        ));
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

/// Benchmark 4, bulk writes: 100,000 entries of 100-byte values per provider, at zero latency
/// and with 50 ms per request; the bound is requests × latency ÷ concurrency plus the time the
/// same job took at zero latency.
async fn bulk(report: &mut Vec<String>) {
    const ENTRIES: usize = 100_000;
    const CONCURRENCY: usize = 4;
    let value = "v".repeat(100);
    report.push("| 4. bulk write 100,000 entries | requests | zero latency | 50 ms latency | bound | ratio to bound | target |".into());
    report.push("|---|---|---|---|---|---|---|".into());
    let mut times = Vec::new();
    for latency in ["0", "50"] {
        let server = Server::start(&["--latency-ms", latency]);
        let cloudflare = server.cloudflare();
        let namespace = cloudflare.namespace(
            cloudflare
                .create_namespace("bulk")
                .await
                .expect("a namespace")
                .id
                .clone(),
        );
        let mut options = edgekv::cloudflare::BulkOptions::default();
        options.concurrency = CONCURRENCY;
        let started = Instant::now();
        let entries = (0..ENTRIES)
            .map(|i| edgekv::cloudflare::BulkEntry::text(format!("key/{i:06}"), value.clone()));
        let report = namespace
            .bulk_write(entries, &options)
            .await
            .expect("a bulk write");
        assert_eq!(report.written, ENTRIES as u64);
        let cloudflare_time = started.elapsed();

        let fastly = server.fastly();
        let store = fastly.store(fastly.create_store("bulk", None).await.expect("a store").id);
        let mut options = fastly::BulkOptions::default();
        options.concurrency = CONCURRENCY;
        let started = Instant::now();
        let entries =
            (0..ENTRIES).map(|i| fastly::BulkEntry::new(format!("key/{i:06}"), value.clone()));
        let report = store.bulk_write(entries, &options).await.expect("a batch");
        assert_eq!(report.written, ENTRIES as u64);
        times.push((cloudflare_time, started.elapsed()));
    }
    // Both providers' jobs take 10 requests here: 10,000 pairs (or lines) per request.
    let requests = ENTRIES.div_ceil(10_000);
    let waits = Duration::from_millis(50) * requests.div_ceil(CONCURRENCY) as u32;
    for (name, zero, slow) in [
        ("Cloudflare bulk", times[0].0, times[1].0),
        ("Fastly batch", times[0].1, times[1].1),
    ] {
        let bound = zero + waits;
        report.push(format!(
            "| {name} | {requests} | {:.2} s | {:.2} s | {:.2} s | {:.2} | ≤ 1.3 |",
            zero.as_secs_f64(),
            slow.as_secs_f64(),
            bound.as_secs_f64(),
            slow.as_secs_f64() / bound.as_secs_f64()
        ));
    }
}

const VALUES: usize = 16;
const VALUE_BYTES: usize = 20 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A 20 MiB value produced 64 KiB at a time, never whole.
fn value_stream()
-> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::iter(0..VALUE_BYTES / CHUNK)
        .map(|i| Ok(bytes::Bytes::from(vec![(i % 251) as u8; CHUNK])))
}

/// Kilobytes of a `/proc/self/status` field (VmRSS now, VmHWM the peak).
/// Benchmark 2, in a child process: 16 concurrent 20 MiB values put then got, one `variant` of
/// the client; prints the peak RSS growth and the time.
async fn streaming_child(variant: &str, fastly_url: &str) {
    let client = fastly::Client::builder(DEFAULT_TOKEN)
        .base_url(fastly_url)
        .build()
        .expect("a client");
    let store = client.store(
        client
            .create_store(&format!("stream-{variant}"), None)
            .await
            .expect("a store")
            .id,
    );
    let bare = edgekv::http::client_builder().build().expect("a client");
    let before = status_kb("VmRSS:");
    let started = Instant::now();
    let jobs = (0..VALUES).map(|i| {
        let (store, bare) = (store.clone(), bare.clone());
        let url = format!("{fastly_url}/resources/stores/kv/{}/keys/v{i}", store.id());
        async move {
            match variant {
                "facade" => {
                    let body = edgekv::Body::from_stream(value_stream(), Some(VALUE_BYTES as u64));
                    store
                        .put(&format!("v{i}"), body, fastly::PutOptions::new())
                        .await
                        .expect("put");
                    let mut got = store
                        .get(&format!("v{i}"))
                        .await
                        .expect("get")
                        .expect("found")
                        .into_body();
                    let mut len = 0;
                    while let Some(chunk) = got.next().await {
                        len += chunk.expect("a chunk").len();
                    }
                    assert_eq!(len, VALUE_BYTES);
                }
                "buffered" => {
                    let whole: Vec<u8> = value_stream()
                        .map(|c| c.expect("a chunk").to_vec())
                        .concat()
                        .await;
                    store
                        .put(&format!("v{i}"), whole, fastly::PutOptions::new())
                        .await
                        .expect("put");
                    let got = store
                        .get(&format!("v{i}"))
                        .await
                        .expect("get")
                        .expect("found")
                        .bytes()
                        .await
                        .expect("body");
                    assert_eq!(got.len(), VALUE_BYTES);
                }
                _ => {
                    let put = bare
                        .put(&url)
                        .header("fastly-key", DEFAULT_TOKEN)
                        .body(reqwest::Body::wrap_stream(value_stream()));
                    assert!(put.send().await.expect("put").status().is_success());
                    let response = bare
                        .get(&url)
                        .header("fastly-key", DEFAULT_TOKEN)
                        .send()
                        .await
                        .expect("get");
                    let mut chunks = response.bytes_stream();
                    let mut len = 0;
                    while let Some(chunk) = chunks.next().await {
                        len += chunk.expect("a chunk").len();
                    }
                    assert_eq!(len, VALUE_BYTES);
                }
            }
        }
    });
    futures_util::future::join_all(jobs).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "growth_kb={} secs={secs}",
        status_kb("VmHWM:").saturating_sub(before)
    );
}

/// Benchmark 2, the parent: each variant in its own process, against an emulator started for it
/// alone (so none pays for another's stored values), in two rounds of opposite order; a variant's
/// figures are the mean of its two runs (growth: the larger).
async fn streaming(report: &mut Vec<String>) {
    const VARIANTS: [&str; 3] = ["facade", "bare", "buffered"];
    let mut runs: Vec<(usize, f64, f64)> = Vec::new();
    for round in 0..2 {
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        if round == 1 {
            order.reverse();
        }
        for index in order {
            let server = Server::start(&[]);
            let output = Command::new(std::env::current_exe().expect("this binary"))
                .args(["--child", VARIANTS[index], &server.fastly])
                .output()
                .expect("the child runs");
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            let field = |name: &str| -> f64 {
                text.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
                    .expect("a child figure")
            };
            runs.push((index, field("growth_kb=") / 1024.0, field("secs=")));
        }
    }
    let results: Vec<(&str, f64, f64)> = VARIANTS
        .iter()
        .enumerate()
        .map(|(index, variant)| {
            let mine = runs.iter().filter(|run| run.0 == index);
            let growth = mine.clone().map(|run| run.1).fold(0.0, f64::max);
            let secs = mine.clone().map(|run| run.2).sum::<f64>() / mine.count() as f64;
            (*variant, growth, secs)
        })
        .collect();
    let megabytes = (2 * VALUES * VALUE_BYTES) as f64 / (1024.0 * 1024.0);
    report.push(
        "| 2. 16 × 20 MiB put then got | peak RSS growth | MiB/s (up + down) | target |".into(),
    );
    report.push("|---|---|---|---|".into());
    for (variant, growth, secs) in &results {
        report.push(format!(
            "| {variant} | {growth:.0} MiB | {:.0} | |",
            megabytes / secs
        ));
    }
    let (facade, bare) = (results[0].2, results[1].2);
    report.push(format!(
        "| facade throughput ÷ bare reqwest | | {:.3} | ≥ 0.9; growth < 64 MiB |",
        bare / facade
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(streaming_child(&args[at + 1], &args[at + 2]));
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--profile") {
        // One thread: a multi-thread runtime's parking and stealing vary by ±2k instructions
        // per call between identical runs, more than the differences measured here.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let calls = args[at + 3].parse().expect("a number of calls");
        runtime.block_on(profile_child(
            &args[at + 1],
            &args[at + 2],
            calls,
            &args[at + 4],
        ));
        return;
    }
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
        if wanted("2") {
            streaming(&mut report).await;
            report.push(String::new());
        }
        if wanted("3") {
            listing(&mut report).await;
            report.push(String::new());
        }
        if wanted("4") {
            bulk(&mut report).await;
            report.push(String::new());
        }
    });
    println!("{}", report.join("\n"));
}
