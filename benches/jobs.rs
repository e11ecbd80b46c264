//! Benchmark 6: a whole-store copy (`edgekv::transfer::copy`) against its request bound, between
//! two emulators run out of process. See BENCHMARKS.md.
//!
//! Run: `cargo bench --bench jobs --features emulator,transfer`.

use std::time::{Duration, Instant};

use edgekv::kv::{Capabilities, KvStore as _};
use edgekv::transfer::{JobOptions, copy, estimate};

#[path = "server.rs"]
mod server;
use server::Server;

const KEYS: usize = 100_000;
const CONCURRENCY: usize = 4;
const LATENCY_MS: u64 = 50;

/// Copies `KEYS` keys from a Cloudflare namespace on one emulator to a Fastly store on another,
/// both adding `latency_ms` to every answer: the copy's time.
async fn copy_once(latency_ms: u64) -> Duration {
    let latency = latency_ms.to_string();
    let source_server = Server::start(&["--latency-ms", &latency]);
    let destination_server = Server::start(&["--latency-ms", &latency]);
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (zero, slow) =
        runtime.block_on(async { (copy_once(0).await, copy_once(LATENCY_MS).await) });
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
}
