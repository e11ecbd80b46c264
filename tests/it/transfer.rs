//! Whole-store jobs (`edgekv::transfer`): copies between providers keep values byte-exact and
//! carry metadata and expiry where the destination can hold them, report every key they cannot
//! write, and resume from their journal after being stopped, redoing only the chunks that were in
//! flight (the emulator's request log counts the writes).

use std::sync::Arc;
use std::time::Duration;

use edgekv::emulator::{Api, Emulator};
use edgekv::kv::{BulkItem, Capabilities, Expiry, KvStore, MemoryStore, Metadata};
use edgekv::transfer::{DifferenceKind, JobOptions, copy, verify};
use serde_json::json;

/// Writes `items` into `store` in one bulk call, every one accepted.
async fn seed(store: &dyn KvStore, items: Vec<BulkItem>) {
    let count = items.len() as u64;
    let stream = futures_util::stream::iter(items.into_iter().map(Ok));
    let report = store.bulk_put(Box::pin(stream), 4).await.unwrap();
    assert_eq!(
        (report.written, report.failed.len()),
        (count, 0),
        "{report:?}"
    );
}

/// `n` keys `p/00000`… with binary values of a few hundred bytes.
fn numbered(n: usize) -> Vec<BulkItem> {
    (0..n)
        .map(|i| {
            let value: Vec<u8> = (0..300).map(|b| (b * 7 + i) as u8).collect();
            BulkItem::new(format!("p/{i:05}"), value)
        })
        .collect()
}

fn journal_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!(
            "edgekv-transfer-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
        .join(name)
}

/// Fastly-shaped to Cloudflare-shaped, in memory: binary values and JSON-text metadata cross;
/// text metadata that is not JSON and a key too long for Cloudflare are reported, not altered,
/// and `verify` names exactly those keys as missing.
#[tokio::test]
async fn a_copy_carries_what_the_destination_can_hold_and_reports_the_rest() {
    let source = MemoryStore::new(Capabilities::fastly());
    let mut items = numbered(2_500);
    items.push(
        BulkItem::new("p/json-meta", vec![0u8, 255]).metadata(Metadata::Text(r#"{"v":1}"#.into())),
    );
    items.push(BulkItem::new("p/text-meta", "x").metadata(Metadata::Text("owner=ada".into())));
    let long = format!("p/{}", "k".repeat(600));
    items.push(BulkItem::new(long.clone(), "too long for Cloudflare"));
    items.push(BulkItem::new("q/outside", "not under the prefix"));
    seed(&source, items).await;
    let destination = MemoryStore::new(Capabilities::cloudflare());

    let chunks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = chunks.clone();
    let options = JobOptions::new().prefix("p/").progress(move |progress| {
        counted.store(progress.chunks, std::sync::atomic::Ordering::SeqCst);
    });
    let report = copy(&source, &destination, &options).await.unwrap();
    assert_eq!(report.listed, 2_503);
    assert_eq!(report.copied, 2_501);
    let mut failed: Vec<&str> = report.failed.iter().map(|f| f.key.as_str()).collect();
    failed.sort_unstable();
    assert_eq!(failed, [long.as_str(), "p/text-meta"]);
    assert!(
        chunks.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "2,503 keys, 1,000 a page"
    );

    let carried = destination.get("p/json-meta").await.unwrap().unwrap();
    assert_eq!(carried.metadata, Some(Metadata::Json(json!({"v": 1}))));
    assert_eq!(carried.value.bytes().await.unwrap(), [0u8, 255].as_slice());
    assert!(destination.get("q/outside").await.unwrap().is_none());

    let differences = verify(&source, &destination, &JobOptions::new().prefix("p/"))
        .await
        .unwrap();
    assert_eq!(differences.compared, 2_503);
    let mut missing: Vec<(&str, DifferenceKind)> = differences
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.kind))
        .collect();
    missing.sort_unstable_by_key(|d| d.0);
    assert_eq!(
        missing,
        [
            (long.as_str(), DifferenceKind::OnlyInSource),
            ("p/text-meta", DifferenceKind::OnlyInSource)
        ]
    );
}

/// Between the real facades on the emulator, both ways: Cloudflare's JSON metadata and expiry
/// reach Fastly (as text, and as a time to live), and come back equal.
#[tokio::test]
async fn a_copy_between_the_providers_round_trips_and_verifies_equal() {
    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    let mut items = numbered(1_200);
    items.push(
        BulkItem::new("p/meta", vec![1u8, 2, 3])
            .metadata(Metadata::Json(json!({"owner": "ada"})))
            .expiry(Expiry::After(Duration::from_secs(3_600))),
    );
    seed(&namespace, items).await;

    let report = copy(&namespace, &store, &JobOptions::new()).await.unwrap();
    assert_eq!(
        (report.copied, report.failed.len()),
        (1_201, 0),
        "{report:?}"
    );
    let carried = KvStore::get(&store, "p/meta").await.unwrap().unwrap();
    assert_eq!(
        carried.metadata,
        Some(Metadata::Text(r#"{"owner":"ada"}"#.into()))
    );
    assert!(
        verify(&namespace, &store, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );

    let back = emu.cloudflare_namespace().await.unwrap();
    let report = copy(&store, &back, &JobOptions::new()).await.unwrap();
    assert_eq!(
        (report.copied, report.failed.len()),
        (1_201, 0),
        "{report:?}"
    );
    let returned = KvStore::get(&back, "p/meta").await.unwrap().unwrap();
    assert_eq!(
        returned.metadata,
        Some(Metadata::Json(json!({"owner": "ada"})))
    );
    assert!(
        verify(&store, &back, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );

    // A changed value is found.
    KvStore::put(&back, "p/00007", "changed".into(), Default::default())
        .await
        .unwrap();
    let report = verify(&store, &back, &JobOptions::new()).await.unwrap();
    assert_eq!(report.different, 1);
    assert_eq!(report.differences[0].kind, DifferenceKind::Value);
}

/// A copy stopped after some chunks (its task aborted, as a kill would stop it) and run again
/// with the same journal finishes without redoing the chunks it had finished: the write requests
/// of both runs together are at most an uninterrupted run's plus the chunks in flight.
#[tokio::test]
async fn a_stopped_copy_resumes_from_its_journal() {
    const KEYS: usize = 6_000; // six listing pages of 1,000
    const CONCURRENCY: usize = 2;
    let source = Arc::new(MemoryStore::new(Capabilities::cloudflare()));
    seed(source.as_ref(), numbered(KEYS)).await;
    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let journal = journal_path("copy.journal");
    emu.clear_requests();

    let (stop, stopped) = tokio::sync::oneshot::channel();
    let stop = std::sync::Mutex::new(Some(stop));
    let options = JobOptions::new()
        .concurrency(CONCURRENCY)
        .journal(&journal)
        .progress(move |progress| {
            if progress.chunks >= 2
                && let Some(stop) = stop.lock().unwrap().take()
            {
                let _ = stop.send(());
            }
        });
    let first = {
        let (source, namespace, options) = (source.clone(), namespace.clone(), options.clone());
        tokio::spawn(async move { copy(source.as_ref(), &namespace, &options).await })
    };
    stopped.await.unwrap();
    first.abort();
    assert!(
        first.await.unwrap_err().is_cancelled(),
        "stopped before it ended"
    );
    let writes_before = bulk_writes(&emu);
    assert!(
        writes_before < 6,
        "{writes_before} of 6 chunks written before the stop"
    );

    let report = copy(
        source.as_ref(),
        &namespace,
        &JobOptions::new().concurrency(CONCURRENCY).journal(&journal),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.listed, report.copied, report.failed.len()),
        (KEYS as u64, KEYS as u64, 0)
    );
    assert!(report.resumed_chunks <= CONCURRENCY as u64, "{report:?}");
    let writes = bulk_writes(&emu);
    assert!(
        writes <= 6 + CONCURRENCY,
        "{writes} bulk writes for 6 chunks"
    );
    // At least 2 chunks were journaled before the stop: the second run skipped them.
    assert!(
        writes - writes_before <= 4,
        "{writes_before} then {writes}: nothing was resumed"
    );
    assert!(
        verify(source.as_ref(), &namespace, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );

    // Run again, the finished job does nothing; another job's journal is refused.
    emu.clear_requests();
    let again = copy(
        source.as_ref(),
        &namespace,
        &JobOptions::new().journal(&journal),
    )
    .await
    .unwrap();
    assert_eq!((again.copied, bulk_writes(&emu)), (KEYS as u64, 0));
    let other = copy(
        source.as_ref(),
        &namespace,
        &JobOptions::new().prefix("p/").journal(&journal),
    )
    .await;
    assert!(other.is_err(), "{other:?}");
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

/// The Cloudflare bulk writes the emulator served.
fn bulk_writes(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.api == Api::Cloudflare && r.method == "PUT" && r.path.ends_with("/bulk"))
        .count()
}
