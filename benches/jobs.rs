//! Benchmark 6: a whole-store copy (`edgekv::transfer::copy`) against its request bound, between
//! two emulators run out of process. See BENCHMARKS.md.
//!
//! Run: `cargo bench --bench jobs --features emulator,transfer`.

use std::time::{Duration, Instant};

use edgekv::kv::{Capabilities, KvStore as _};
use edgekv::transfer::{JobOptions, copy, estimate};

#[path = "server.rs"]
mod server;
use server::{Server, status_kb};

const KEYS: usize = 100_000;
const CONCURRENCY: usize = 4;
const LATENCY_MS: u64 = 50;

/// The scaled-down budgets of the budget-bound run: Cloudflare's 1,200 per 5 minutes as 120 per
/// 3 s, Fastly's 1,000 writes an hour as 20 per 3 s; each side's clients keep to their own.
const CLOUDFLARE_BUDGET: (u32, u64) = (120, 3);
const FASTLY_BUDGET: (u32, u64) = (20, 3);

/// Copies `KEYS` keys from a Cloudflare namespace on one emulator to a Fastly store on another,
/// both adding `latency_ms` to every answer, under the scaled budgets if `budgeted`: the copy's
/// time.
async fn copy_once(latency_ms: u64, budgeted: bool) -> Duration {
    use edgekv::policy::{ClientLimit, RequestPolicy};
    let latency = latency_ms.to_string();
    let cloudflare_budget = format!("{}/{}", CLOUDFLARE_BUDGET.0, CLOUDFLARE_BUDGET.1);
    let fastly_budget = format!("{}/{}", FASTLY_BUDGET.0, FASTLY_BUDGET.1);
    let (mut source_args, mut destination_args) = (
        vec!["--latency-ms", &latency],
        vec!["--latency-ms", &latency],
    );
    if budgeted {
        source_args.extend(["--cloudflare-budget", &cloudflare_budget]);
        destination_args.extend(["--fastly-budget", &fastly_budget]);
    }
    let source_server = Server::start(&source_args);
    let destination_server = Server::start(&destination_args);
    let cloudflare = source_server.cloudflare();
    let created = cloudflare
        .create_namespace("source")
        .await
        .expect("a namespace");
    let namespace = cloudflare.namespace(&created.id);
    let entries = (0..KEYS).map(|i| {
        edgekv::cloudflare::BulkEntry::text(
            format!("key/{i:06}"),
            format!("value {i:06} {}", "v".repeat(80)),
        )
    });
    let options = edgekv::cloudflare::BulkOptions::default().concurrency(CONCURRENCY);
    let seeded = namespace
        .bulk_write(entries, &options)
        .await
        .expect("seeded");
    assert_eq!(seeded.written, KEYS as u64);
    let fastly = destination_server.fastly();
    let store = fastly.store(
        fastly
            .create_store("destination", None)
            .await
            .expect("a store")
            .id,
    );
    let (namespace, store) = if budgeted {
        // The setup's requests leave the windows before the copy starts.
        tokio::time::sleep(Duration::from_secs(
            CLOUDFLARE_BUDGET.1.max(FASTLY_BUDGET.1),
        ))
        .await;
        let per = Duration::from_secs;
        let cloudflare_limit = ClientLimit::new(CLOUDFLARE_BUDGET.0, per(CLOUDFLARE_BUDGET.1));
        let fastly_limit =
            ClientLimit::new(FASTLY_BUDGET.0, per(FASTLY_BUDGET.1)).counts_reads(false);
        let cloudflare = edgekv::cloudflare::Client::builder(
            edgekv::emulator::DEFAULT_TOKEN,
            edgekv::emulator::DEFAULT_ACCOUNT,
        )
        .base_url(&source_server.cloudflare)
        .policy(RequestPolicy::default().client_limit(Some(cloudflare_limit)))
        .build()
        .expect("a client");
        let fastly = edgekv::fastly::Client::builder(edgekv::emulator::DEFAULT_TOKEN)
            .base_url(&destination_server.fastly)
            .policy(RequestPolicy::default().client_limit(Some(fastly_limit)))
            .build()
            .expect("a client");
        (
            cloudflare.namespace(namespace.id()),
            fastly.store(store.id()),
        )
    } else {
        (namespace, store)
    };

    let started = Instant::now();
    let report = copy(
        &namespace,
        &store,
        &JobOptions::new().concurrency(CONCURRENCY),
    )
    .await
    .expect("the copy");
    let took = started.elapsed();
    assert_eq!((report.copied, report.failed.len()), (KEYS as u64, 0));
    assert_eq!(
        namespace.capabilities().provider,
        edgekv::Provider::Cloudflare
    );
    took
}

/// Keys of the memory measurement.
const MANY: usize = 1_000_000;

/// In a child process: copies the namespace to the store (URLs and ids in `args`) with a
/// journal, and prints the peak RSS growth over the process's RSS before the copy, in KiB.
async fn rss_child(args: &[String]) {
    let (cloudflare_url, fastly_url, namespace, store, journal) =
        (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let namespace = edgekv::cloudflare::Client::builder(
        edgekv::emulator::DEFAULT_TOKEN,
        edgekv::emulator::DEFAULT_ACCOUNT,
    )
    .base_url(cloudflare_url)
    .build()
    .expect("a client")
    .namespace(namespace);
    let store = edgekv::fastly::Client::builder(edgekv::emulator::DEFAULT_TOKEN)
        .base_url(fastly_url)
        .build()
        .expect("a client")
        .store(store);
    let before = status_kb("VmRSS:");
    let options = JobOptions::new().concurrency(CONCURRENCY).journal(journal);
    let report = copy(&namespace, &store, &options).await.expect("the copy");
    assert_eq!((report.copied, report.failed.len()), (MANY as u64, 0));
    println!(
        "rss-growth-kib {}",
        status_kb("VmHWM:").saturating_sub(before)
    );
}

/// Benchmark 6's memory: a copy of `MANY` keys in a child process; its peak RSS growth.
async fn copy_rss() -> (u64, Duration) {
    let source_server = Server::start(&[]);
    let destination_server = Server::start(&[]);
    let cloudflare = source_server.cloudflare();
    let created = cloudflare
        .create_namespace("many")
        .await
        .expect("a namespace");
    let namespace = cloudflare.namespace(&created.id);
    let entries = (0..MANY).map(|i| {
        edgekv::cloudflare::BulkEntry::text(format!("key/{i:07}"), format!("value {i:07}"))
    });
    let options = edgekv::cloudflare::BulkOptions::default().concurrency(CONCURRENCY);
    let seeded = namespace
        .bulk_write(entries, &options)
        .await
        .expect("seeded");
    assert_eq!(seeded.written, MANY as u64);
    let fastly = destination_server.fastly();
    let store = fastly.create_store("many", None).await.expect("a store").id;
    let journal = std::env::temp_dir().join(format!("edgekv-bench-{}.journal", std::process::id()));
    let started = Instant::now();
    let output = std::process::Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--rss-child",
            &source_server.cloudflare,
            &destination_server.fastly,
        ])
        .args([namespace.id(), &store, &journal.display().to_string()])
        .output()
        .expect("the child runs");
    let took = started.elapsed();
    let _ = std::fs::remove_file(&journal);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let growth = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rss-growth-kib "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the child's figure");
    (growth, took)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--rss-child") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(rss_child(&args[at + 1..]));
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (zero, slow, budgeted) = runtime.block_on(async {
        (
            copy_once(0, false).await,
            copy_once(LATENCY_MS, false).await,
            copy_once(0, true).await,
        )
    });
    // The requests each side serves (the listing sequential, the rest `CONCURRENCY` at a time).
    let plan = estimate(
        KEYS as u64,
        &Capabilities::cloudflare(),
        &Capabilities::fastly(),
    );
    let pages = KEYS.div_ceil(1000) as u64;
    let reads = plan.source.requests - pages;
    let writes = plan.destination.requests;
    let latency = Duration::from_millis(LATENCY_MS);
    let bound = latency * pages as u32
        + latency * ((reads + writes).div_ceil(CONCURRENCY as u64)) as u32
        + zero;
    println!(
        "| 6. copy 100,000 keys, Cloudflare → Fastly | requests (pages + reads + writes) | zero latency | 50 ms latency | request bound | ratio | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| two emulators, concurrency {CONCURRENCY} | {pages} + {reads} + {writes} | {:.2} s | {:.2} s | {:.2} s | {:.2} | ≤ 1.3 |",
        zero.as_secs_f64(),
        slow.as_secs_f64(),
        bound.as_secs_f64(),
        slow.as_secs_f64() / bound.as_secs_f64()
    );

    // The budget bound: each side's counted requests at its budget's rate, the larger.
    let rate = |(requests, seconds): (u32, u64)| seconds as f64 / f64::from(requests);
    let source_bound = plan.source.counted as f64 * rate(CLOUDFLARE_BUDGET);
    let destination_bound = plan.destination.counted as f64 * rate(FASTLY_BUDGET);
    let budget_bound = source_bound.max(destination_bound);
    println!();
    println!(
        "| 6. the same copy, budgets scaled down | counted (Cloudflare / Fastly) | budget bound (Cloudflare / Fastly) | time | ratio | target |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {}/{} s and {}/{} s writes | {} / {} | {:.1} s / {:.1} s | {:.2} s | {:.2} | ≤ 1.2 |",
        CLOUDFLARE_BUDGET.0,
        CLOUDFLARE_BUDGET.1,
        FASTLY_BUDGET.0,
        FASTLY_BUDGET.1,
        plan.source.counted,
        plan.destination.counted,
        source_bound,
        destination_bound,
        budgeted.as_secs_f64(),
        budgeted.as_secs_f64() / budget_bound
    );

    let (growth_kib, took) = runtime.block_on(copy_rss());
    println!();
    println!(
        "| 6. copy 1,000,000 keys with a journal | time | peak RSS growth of the job's process | target |"
    );
    println!("|---|---|---|---|");
    println!(
        "| Cloudflare → Fastly, concurrency {CONCURRENCY}, no latency | {:.1} s | {:.1} MiB | < 64 MiB |",
        took.as_secs_f64(),
        growth_kib as f64 / 1024.0
    );
}
