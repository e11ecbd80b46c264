//! Whole-store jobs (`edgekv::transfer`): copies between providers keep values byte-exact and
//! carry metadata and expiry where the destination can hold them, report every key they cannot
//! write, and resume from their journal after being stopped, redoing only the chunks that were in
//! flight (the emulator's request log counts the writes).

use std::sync::Arc;
use std::time::Duration;

use edgekv::emulator::{Api, Emulator};
use edgekv::kv::{BulkItem, Capabilities, Expiry, KvStore, MemoryStore, Metadata};
use edgekv::transfer::{DifferenceKind, JobOptions, copy, verify};
use futures_util::TryStreamExt as _;
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

/// An error and its causes, as one line.
fn error_chain(error: &edgekv::Error) -> String {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain += &format!(": {cause}");
        source = cause.source();
    }
    chain
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
        assert!(progress.listed_this_run > 0 && progress.listed <= 2_503);
        assert!(progress.eta(2_503).is_some() || progress.elapsed.is_zero());
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

    emu.clear_requests();
    let report = copy(&namespace, &store, &JobOptions::new()).await.unwrap();
    assert_eq!(
        (report.copied, report.failed.len()),
        (1_201, 0),
        "{report:?}"
    );
    // The requests the report counts per side are those each API served.
    let served = |api: Api| emu.requests().iter().filter(|r| r.api == api).count() as u64;
    assert_eq!(
        (report.source_requests, report.destination_requests),
        (served(Api::Cloudflare), served(Api::Fastly))
    );
    assert!(
        report.source_requests >= 2 + 13 && report.destination_requests >= 2,
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

/// The child of the kill tests: runs the job its environment names (a copy either way, an
/// export of the namespace or an import into the store) with the journal, then exits. Run
/// alone by the parent; in the normal test run (no environment) it does nothing.
#[tokio::test]
async fn copy_child() {
    use edgekv::transfer::{Format, export, import};

    let Ok(journal) = std::env::var("EDGEKV_COPY_CHILD_JOURNAL") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let cloudflare = edgekv::cloudflare::Client::builder(
        edgekv::emulator::DEFAULT_TOKEN,
        var("EDGEKV_COPY_CHILD_ACCOUNT"),
    )
    .base_url(var("EDGEKV_COPY_CHILD_CLOUDFLARE"))
    .policy(patient())
    .build()
    .unwrap();
    let fastly = edgekv::fastly::Client::builder(edgekv::emulator::DEFAULT_TOKEN)
        .base_url(var("EDGEKV_COPY_CHILD_FASTLY"))
        .policy(patient())
        .build()
        .unwrap();
    let namespace = cloudflare.namespace(var("EDGEKV_COPY_CHILD_NAMESPACE"));
    let store = fastly.store(var("EDGEKV_COPY_CHILD_STORE"));
    let file = std::path::PathBuf::from(var("EDGEKV_COPY_CHILD_FILE"));
    let options = JobOptions::new()
        .concurrency(KILL_CONCURRENCY)
        .journal(journal);
    let report = match var("EDGEKV_COPY_CHILD_JOB").as_str() {
        "from-fastly" => copy(&store, &namespace, &options).await,
        "export" => export(&namespace, &file, Format::Wrangler, &options).await,
        "import" => import(&file, Format::Wrangler, &store, &options).await,
        _ => copy(&namespace, &store, &options).await,
    }
    .unwrap();
    assert_eq!(report.failed.len(), 0, "{report:?}");
}

const KILL_CONCURRENCY: usize = 2;

/// Retries enough for an emulator that injects faults, and quick ones.
fn patient() -> edgekv::policy::RequestPolicy {
    use edgekv::policy::{RequestPolicy, RetryPolicy};
    let retry = RetryPolicy::default()
        .max_attempts(12)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(20));
    RequestPolicy::default().retry(retry)
}

/// The journal's chunk records so far.
fn chunks_journaled(journal: &std::path::Path) -> usize {
    std::fs::read_to_string(journal)
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(r#""step":"chunk""#))
                .count()
        })
        .unwrap_or(0)
}

/// The kill tests' keys: 6 chunks of 1,000.
const KILL_KEYS: usize = 6_000;
const KILL_CHUNKS: usize = KILL_KEYS / 1_000;

/// An emulator injecting 429s (with a short `retry-after-ms`) and 503s, and a namespace and a
/// store in it, the one named seeded with [`KILL_KEYS`] text values (the source's reads stay
/// bulk where it has them: binary values are the round trip tests' concern).
async fn faulty_pair(
    seed_fastly: bool,
) -> (
    Emulator,
    edgekv::cloudflare::Namespace,
    edgekv::fastly::Store,
) {
    use edgekv::emulator::{EmulatorConfig, Faults};
    let faults = Faults::default()
        .latency(Duration::from_millis(2))
        .rate_limited(0.02)
        .server_errors(0.02)
        .retry_after(Duration::from_millis(20))
        .seed(7);
    let emu = Emulator::start(EmulatorConfig::default().faults(faults))
        .await
        .unwrap();
    // Clients as patient as the child's: the emulator injects faults into every request.
    let cloudflare = emu.cloudflare_builder().policy(patient()).build().unwrap();
    let fastly = emu.fastly_builder().policy(patient()).build().unwrap();
    let created = cloudflare.create_namespace("killed").await.unwrap();
    let namespace = cloudflare.namespace(&created.id);
    let store = fastly.store(fastly.create_store("killed", None).await.unwrap().id);
    let values = (0..KILL_KEYS).map(|i| (format!("p/{i:05}"), format!("value {i}").into_bytes()));
    if seed_fastly {
        emu.seed_fastly(store.id(), values).unwrap();
    } else {
        emu.seed_cloudflare(namespace.id(), values).unwrap();
    }
    emu.clear_requests();
    (emu, namespace, store)
}

/// What a kill test counts of a job's requests: the ones a chunk makes `per_chunk` of (the
/// destination's acknowledged writes, or an export's reads), as the emulator logged them.
struct Counted {
    per_chunk: usize,
    count: fn(&Emulator) -> usize,
}

/// Runs `job` in a child process between the namespace and the store (`file` for an export
/// or import), killed with SIGKILL once its journal records k chunks, for three seeded k in
/// 1..=4 (each over the chunks done before), each time run again; then once more to the end.
/// At every kill some but not all of the [`KILL_CHUNKS`] are done, and the last run makes at
/// most the requests of the chunks not yet journaled, plus those of the chunks in flight when
/// a run of it failed (a fault it could not retry).
async fn kill_three_times_then_finish(
    emu: &Emulator,
    job: &str,
    namespace: &edgekv::cloudflare::Namespace,
    store: &edgekv::fastly::Store,
    journal: &std::path::Path,
    file: &std::path::Path,
    counted: Counted,
) {
    let seed = std::env::var("EDGEKV_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kill_points: Vec<usize> = (1..=4).collect();
    rng.shuffle(&mut kill_points);
    kill_points.truncate(3);
    kill_points.sort_unstable();
    let name = crate::support::child::test_name(module_path!(), "copy_child");
    let exe = std::env::current_exe().unwrap();
    let child = || {
        std::process::Command::new(&exe)
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env("EDGEKV_COPY_CHILD_JOURNAL", journal)
            .env("EDGEKV_COPY_CHILD_CLOUDFLARE", emu.cloudflare_url())
            .env("EDGEKV_COPY_CHILD_FASTLY", emu.fastly_url())
            .env("EDGEKV_COPY_CHILD_ACCOUNT", emu.cloudflare().account_id())
            .env("EDGEKV_COPY_CHILD_NAMESPACE", namespace.id())
            .env("EDGEKV_COPY_CHILD_STORE", store.id())
            .env("EDGEKV_COPY_CHILD_FILE", file)
            .env("EDGEKV_COPY_CHILD_JOB", job)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    for point in kill_points {
        // Each run is killed once it has journaled a chunk of its own, never before.
        let kill_after = point.max(chunks_journaled(journal) + 1);
        let mut running = child();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if chunks_journaled(journal) >= kill_after {
                running.kill().unwrap(); // SIGKILL
                let _ = running.wait();
                break;
            }
            if let Some(status) = running.try_wait().unwrap() {
                // It failed (an injected fault it could not retry) or ended: run it again.
                assert!(
                    !status.success() || chunks_journaled(journal) >= KILL_CHUNKS,
                    "{job}: {status}"
                );
                running = child();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{job}: the child made no progress"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = chunks_journaled(journal);
        assert!(
            done > 0 && done < KILL_CHUNKS,
            "{job}: killed after {done} of {KILL_CHUNKS} chunks"
        );
    }
    let journaled = chunks_journaled(journal);
    // A request the last killed run had sent is served after the emulator's latency, and
    // logged then: counted before the last run only once the emulator has been quiet a while.
    let mut logged = emu.requests().len();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = emu.requests().len();
        if now == logged {
            break;
        }
        logged = now;
    }
    let before = (counted.count)(emu);
    let mut finished = false;
    let mut failed_runs = 0;
    for _ in 0..10 {
        let status = tokio::task::spawn_blocking({
            let mut running = child();
            move || running.wait().unwrap()
        })
        .await
        .unwrap();
        if status.success() {
            finished = true;
            break;
        }
        failed_runs += 1;
    }
    assert!(finished, "{job}: the resumed job never finished");
    let last = (counted.count)(emu) - before;
    let most = (KILL_CHUNKS - journaled + KILL_CONCURRENCY * failed_runs) * counted.per_chunk;
    assert!(
        last <= most,
        "{job} (seed {seed}): the last run made {last} counted requests for {} chunks left",
        KILL_CHUNKS - journaled
    );
}

/// The Cloudflare bulk reads the emulator answered.
fn bulk_reads(emu: &Emulator) -> usize {
    emu.requests()
        .iter()
        .filter(|r| r.api == Api::Cloudflare && r.path.ends_with("/bulk/get"))
        .filter(|r| (200..300).contains(&r.status))
        .count()
}

/// The write requests the emulator acknowledged: Fastly's batches, or Cloudflare's bulk puts.
fn acknowledged_bulk_writes(emu: &Emulator, on: Api) -> usize {
    emu.requests()
        .iter()
        .filter(|r| {
            let write = match on {
                Api::Cloudflare => r.method == "PUT" && r.path.ends_with("/bulk"),
                _ => r.path.ends_with("/batch"),
            };
            r.api == on && write && (200..300).contains(&r.status)
        })
        .count()
}

/// A Cloudflare → Fastly copy in a child process, killed with SIGKILL at three seeded points
/// (chunks journaled), each time run again, on an emulator that injects 429s (a short
/// `retry-after-ms`) and 503s: at every kill some but not all is done; in the end the stores
/// are equal, and the batch writes the store acknowledged over all runs are at most an
/// uninterrupted run's plus 3 × the concurrency (only chunks in flight at a kill are redone).
#[tokio::test]
async fn a_copy_killed_three_times_resumes_and_ends_equal() {
    killed_three_times(false).await;
}

/// The same, from Fastly to Cloudflare.
#[tokio::test]
async fn a_copy_from_fastly_killed_three_times_resumes_and_ends_equal() {
    killed_three_times(true).await;
}

async fn killed_three_times(from_fastly: bool) {
    let (emu, namespace, store) = faulty_pair(from_fastly).await;
    let dir = journal_path("killed");
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("copy.journal");
    let job = if from_fastly { "from-fastly" } else { "copy" };
    let counted = Counted {
        per_chunk: 1,
        count: if from_fastly {
            |emu| acknowledged_bulk_writes(emu, Api::Cloudflare)
        } else {
            |emu| acknowledged_bulk_writes(emu, Api::Fastly)
        },
    };
    let unused = dir.join("unused");
    kill_three_times_then_finish(&emu, job, &namespace, &store, &journal, &unused, counted).await;

    let equal = if from_fastly {
        verify(&store, &namespace, &JobOptions::new()).await
    } else {
        verify(&namespace, &store, &JobOptions::new()).await
    };
    let equal = equal.unwrap();
    assert!(equal.is_equal(), "{equal:?}");
    let destination = if from_fastly {
        Api::Cloudflare
    } else {
        Api::Fastly
    };
    let acknowledged = acknowledged_bulk_writes(&emu, destination);
    assert!(
        acknowledged <= KILL_CHUNKS + 3 * KILL_CONCURRENCY,
        "{acknowledged} batches acknowledged for {KILL_CHUNKS} chunks over 4 runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file round trip: an export of the namespace to Cloudflare's bulk JSON, then an import of
/// that file into the store, each in a child killed with SIGKILL at three seeded points (chunks
/// journaled) and run again, on an emulator injecting 429s and 503s. The file ends as
/// valid JSON holding every key exactly once (a chunk half written at a kill is cut back, not
/// repeated); the namespace's reads over all runs are at most an uninterrupted export's plus
/// the 3 chunks in flight at the kills (an export goes a chunk at a time); the store's
/// acknowledged batches likewise; and the stores end equal.
#[tokio::test]
async fn a_file_round_trip_killed_three_times_each_way_resumes_and_ends_equal() {
    let (emu, namespace, store) = faulty_pair(false).await;
    let dir = journal_path("round-trip");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("namespace.json");

    let export_journal = dir.join("export.journal");
    let reads = Counted {
        per_chunk: 10,
        count: bulk_reads,
    };
    kill_three_times_then_finish(
        &emu,
        "export",
        &namespace,
        &store,
        &export_journal,
        &file,
        reads,
    )
    .await;
    let exported: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let keys: std::collections::BTreeSet<&str> = exported
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        (exported.len(), keys.len()),
        (KILL_KEYS, KILL_KEYS),
        "every key exactly once"
    );
    // 10 bulk reads of 100 keys a chunk; a chunk in flight at each kill is read again.
    let reads = bulk_reads(&emu);
    assert!(
        reads <= (KILL_CHUNKS + 3) * 10,
        "{reads} bulk reads for {KILL_CHUNKS} chunks over 4 runs"
    );

    let import_journal = dir.join("import.journal");
    let writes = Counted {
        per_chunk: 1,
        count: |emu| acknowledged_bulk_writes(emu, Api::Fastly),
    };
    kill_three_times_then_finish(
        &emu,
        "import",
        &namespace,
        &store,
        &import_journal,
        &file,
        writes,
    )
    .await;
    let equal = verify(&namespace, &store, &JobOptions::new())
        .await
        .unwrap();
    assert!(equal.is_equal(), "{equal:?}");
    let acknowledged = acknowledged_bulk_writes(&emu, Api::Fastly);
    assert!(
        acknowledged <= KILL_CHUNKS + 3,
        "{acknowledged} batches acknowledged for {KILL_CHUNKS} chunks over 4 runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sync makes the destination hold what the source holds: a dry run changes nothing and
/// names what it would delete; the deletion guard stops a sync that would delete more than its
/// stated share, before any change; allowed, the stores end equal.
#[tokio::test]
async fn a_sync_dry_runs_guards_its_deletes_and_ends_equal() {
    use edgekv::error::InvalidInput;
    use edgekv::transfer::sync;

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(100)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    let mut stale = numbered(90); // the first 90, with other values…
    for item in &mut stale {
        item.value = "old".into();
    }
    stale.extend((0..20).map(|i| BulkItem::new(format!("p/stale-{i:02}"), "gone from the source")));
    seed(&destination, stale).await;
    let snapshot = |store: &MemoryStore| store.len();

    let plan = sync(
        &source,
        &destination,
        &JobOptions::new().dry_run(true).max_delete_percent(100),
    )
    .await
    .unwrap();
    assert_eq!((plan.to_copy, plan.to_delete, plan.deleted), (100, 20, 0));
    assert_eq!(
        plan.to_delete_keys.first().map(String::as_str),
        Some("p/stale-00")
    );
    assert_eq!(snapshot(&destination), 110, "a dry run changes nothing");
    assert_eq!(value(&destination, "p/00001").await, b"old");

    // 20 of 110 keys is 18 %: over the default 10 %, refused before any change.
    let refused = sync(&source, &destination, &JobOptions::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            edgekv::Error::InvalidInput(InvalidInput::TooManyDeletes {
                deletes: 20,
                of: 110,
                max_percent: 10
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        value(&destination, "p/00001").await,
        b"old",
        "nothing was copied either"
    );

    let done = sync(
        &source,
        &destination,
        &JobOptions::new().max_delete_percent(20),
    )
    .await
    .unwrap();
    assert_eq!(
        (done.copy.copied, done.deleted, done.failed_deletes.len()),
        (100, 20, 0)
    );
    assert!(
        verify(&source, &destination, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );
    assert_eq!(snapshot(&destination), 100);
}

async fn value(store: &dyn KvStore, key: &str) -> Vec<u8> {
    let entry = store.get(key).await.unwrap().expect("there");
    entry.value.bytes().await.unwrap().to_vec()
}

/// Exports then imports in each format keep every entry: byte-exact values (binary ones
/// included), metadata, and expiry where the format and the store keep it.
#[tokio::test]
async fn exports_and_imports_round_trip_in_every_format() {
    use edgekv::transfer::{Format, export, import};

    let dir = journal_path("files");
    std::fs::create_dir_all(&dir).unwrap();
    let in_a_day = edgekv::emulator::Emulator::new().await.unwrap().now() + 86_400;

    // Cloudflare's bulk JSON, from and to a Cloudflare-shaped store.
    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(
        &source,
        vec![
            BulkItem::new("text", "hello"),
            BulkItem::new("binary", vec![0u8, 159, 146, 150, 255]),
            BulkItem::new("meta", "v")
                .metadata(Metadata::Json(json!({"owner": "ada", "n": [1, 2]})))
                .expiry(Expiry::At(in_a_day)),
        ],
    )
    .await;
    let file = dir.join("export.json");
    let report = export(&source, &file, Format::of(&file), &JobOptions::new())
        .await
        .unwrap();
    assert_eq!((report.copied, report.failed.len()), (3, 0));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    for item in written.as_array().unwrap() {
        for field in item.as_object().unwrap().keys() {
            assert!(
                [
                    "key",
                    "value",
                    "expiration",
                    "expiration_ttl",
                    "metadata",
                    "base64"
                ]
                .contains(&field.as_str()),
                "{field}"
            );
        }
    }
    let binary = written
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "binary")
        .unwrap();
    assert_eq!(
        (binary["base64"].as_bool(), binary["value"].as_str()),
        (Some(true), Some("AJ+Slv8="))
    );
    let back = MemoryStore::new(Capabilities::cloudflare());
    let report = import(&file, Format::Wrangler, &back, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!((report.copied, report.failed.len()), (3, 0));
    assert!(
        verify(&source, &back, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );
    assert_eq!(
        back.get("meta").await.unwrap().unwrap().expires_at,
        Some(in_a_day)
    );

    // Fastly's batch lines, from and to a Fastly-shaped store.
    let source = MemoryStore::new(Capabilities::fastly());
    seed(
        &source,
        vec![
            BulkItem::new("bin", vec![255u8, 0, 10]).metadata(Metadata::Text("owner=ada".into())),
            BulkItem::new("plain", "v"),
        ],
    )
    .await;
    let file = dir.join("export.ndjson");
    export(&source, &file, Format::of(&file), &JobOptions::new())
        .await
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    for line in text.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        for field in line.as_object().unwrap().keys() {
            assert!(
                ["key", "value", "metadata", "time_to_live_sec"].contains(&field.as_str()),
                "{field}"
            );
        }
    }
    let back = MemoryStore::new(Capabilities::fastly());
    import(&file, Format::FastlyNdjson, &back, &JobOptions::new())
        .await
        .unwrap();
    assert!(
        verify(&source, &back, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The directory format keeps apart what file systems would merge or misplace: a 1,024-byte
/// key, keys that look like `..`, `a/b` next to `a`, and keys differing only in case; nothing is
/// written outside the directory.
#[tokio::test]
async fn the_directory_format_keeps_awkward_keys_apart_and_inside() {
    use edgekv::transfer::{Format, export, import};

    let root = journal_path("tree");
    let dir = root.join("export");
    std::fs::create_dir_all(&root).unwrap();
    let keys = [
        "k".repeat(1024),
        "../escape".to_string(),
        "a/..".to_string(),
        "...".to_string(),
        ".hidden".to_string(),
        "a".to_string(),
        "a/b".to_string(),
        "Key".to_string(),
        "key".to_string(),
        "KEY".to_string(),
        "naïve/ключ".to_string(),
    ];
    let source = MemoryStore::new(Capabilities::fastly());
    let items = keys
        .iter()
        .enumerate()
        .map(|(i, k)| BulkItem::new(k.clone(), format!("value {i}")));
    seed(&source, items.collect()).await;

    let report = export(&source, &dir, Format::Directory, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!((report.copied, report.failed.len()), (keys.len() as u64, 0));
    let beside: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["export"], "nothing written beside the directory");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        2 * keys.len(),
        "a value and a .meta per key, no file shared"
    );
    let mut folded = std::collections::HashSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(name.len() <= 205 && !name.starts_with('.'), "{name}");
        // A case-insensitive file system could not merge two of them.
        assert!(
            folded.insert(name.to_lowercase()),
            "{name} differs from another only in case"
        );
    }

    let back = MemoryStore::new(Capabilities::fastly());
    let report = import(&dir, Format::Directory, &back, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!((report.copied, report.failed.len()), (keys.len() as u64, 0));
    assert!(
        verify(&source, &back, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// One bad line does not fail the rest (the official CLIs send a whole file as one batch): it
/// is reported under its line, and every other entry is written.
#[tokio::test]
async fn an_import_reports_a_bad_line_and_writes_the_others() {
    use edgekv::transfer::{Format, import};

    let dir = journal_path("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lines.ndjson");
    std::fs::write(
        &file,
        "{\"key\":\"a\",\"value\":\"YQ==\"}\nnot json\n{\"key\":\"b\",\"value\":\"!!\"}\n\n{\"key\":\"c\",\"value\":\"Yw==\"}\n",
    )
    .unwrap();
    let store = MemoryStore::new(Capabilities::fastly());
    let report = import(&file, Format::FastlyNdjson, &store, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!(report.copied, 2);
    let failed: Vec<(&str, u64)> = report
        .failed
        .iter()
        .map(|f| (f.key.as_str(), f.index))
        .collect();
    assert_eq!(failed, [("(line 2)", 1), ("b", 2)]);
    assert!(
        report.failed[0].reason.contains("line 2"),
        "{:?}",
        report.failed[0]
    );
    assert_eq!(value(&store, "c").await, b"c");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An element of Cloudflare's bulk JSON longer than any value could make it (40 MiB) ends the
/// import with an error naming it, instead of being read whole however long it is.
#[tokio::test]
async fn an_import_refuses_an_element_longer_than_any_value() {
    use edgekv::transfer::{Format, import};

    let dir = journal_path("long");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bulk.json");
    let mut text = br#"[{"key":"a","value":"x"},{"key":"b","value":""#.to_vec();
    text.resize(text.len() + (41 << 20), b'y');
    text.extend_from_slice(br#""}]"#);
    std::fs::write(&file, text).unwrap();
    let store = MemoryStore::new(Capabilities::cloudflare());
    let refused = import(&file, Format::Wrangler, &store, &JobOptions::new())
        .await
        .unwrap_err();
    let chain = error_chain(&refused);
    assert!(chain.contains("longer than 41943040 bytes"), "{chain}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A copy the caller bounds in time stops before writing when the providers' budgets could not
/// carry it that fast, naming the side that bounds it.
#[tokio::test]
async fn a_copy_over_its_time_bound_stops_before_writing() {
    use edgekv::error::InvalidInput;

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(10)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    // A million keys: 1,000 batch writes on Fastly's 1,000 an hour is an hour at least.
    let options = JobOptions::new()
        .expected_keys(1_000_000)
        .max_duration(Duration::from_secs(1_800));
    let refused = copy(&source, &destination, &options).await.unwrap_err();
    assert!(
        matches!(
            refused,
            edgekv::Error::InvalidInput(InvalidInput::JobTooLong {
                slowest: "destination",
                max_secs: 1_800,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(destination.is_empty(), "nothing written");
    let within = options.max_duration(Duration::from_secs(7_200));
    assert_eq!(
        copy(&source, &destination, &within).await.unwrap().copied,
        10
    );

    // Without a count from the caller, a listing pass counts: 2,500 keys are 3 batch writes,
    // 10.8 s of Fastly's budget.
    seed(&source, numbered(2_500)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    let counted = JobOptions::new().max_duration(Duration::from_secs(10));
    let refused = copy(&source, &destination, &counted).await.unwrap_err();
    assert!(
        matches!(
            refused,
            edgekv::Error::InvalidInput(InvalidInput::JobTooLong {
                estimate_secs: 10,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(destination.is_empty(), "nothing written");
    let within = counted.max_duration(Duration::from_secs(11));
    assert_eq!(
        copy(&source, &destination, &within).await.unwrap().copied,
        2_500
    );
}

/// A resumed copy skips a chunk an earlier run finished only if the listing gives the same page
/// again: here the run before finished page 1 but not page 0, and keys were added to page 0's
/// range since, which moves page 1; every key still arrives.
#[tokio::test]
async fn a_resume_redoes_a_finished_chunk_whose_page_moved() {
    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(3_000)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    let journal = journal_path("moved.journal");
    let options = JobOptions::new().concurrency(1).journal(&journal);
    copy(&source, &destination, &options).await.unwrap();
    // As if page 0 had been in flight at a kill: its record and the end are dropped, and the
    // destination lost what it wrote.
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""seq":0,"#) && !l.contains(r#""step":"finished""#))
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    for item in numbered(1_000) {
        KvStore::delete(&destination, &item.key).await.unwrap();
    }
    // 500 keys added inside page 0's range: page 1 now starts elsewhere.
    let added = (0..500).map(|i| BulkItem::new(format!("p/00000-{i:03}"), "new"));
    seed(&source, added.collect()).await;

    let report = copy(&source, &destination, &options).await.unwrap();
    assert_eq!(report.failed.len(), 0);
    assert!(
        verify(&source, &destination, &JobOptions::new())
            .await
            .unwrap()
            .is_equal()
    );
    assert_eq!(destination.len(), 3_500);
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

/// A journal names its two stores: it is refused for another pair, so a reused file never
/// makes a copy skip keys it never wrote.
#[tokio::test]
async fn a_journal_is_refused_for_another_pair_of_stores() {
    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(10)).await;
    let journal = journal_path("pair.journal");
    let options = JobOptions::new().journal(&journal);
    copy(&source, &MemoryStore::new(Capabilities::fastly()), &options)
        .await
        .unwrap();
    let other = MemoryStore::new(Capabilities::fastly());
    let refused = copy(&source, &other, &options).await.unwrap_err();
    assert!(
        refused.to_string().contains("outside the service"),
        "{refused}"
    );
    assert!(other.is_empty());
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

/// A chunk whose request failed as a whole (here: its store does not exist) is a failure of the
/// destination, not of the keys: the job stops with an error and journals nothing, so a run
/// again retries it.
#[tokio::test]
async fn a_chunk_whose_request_failed_stops_the_job_unjournaled() {
    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(10)).await;
    let emu = Emulator::new().await.unwrap();
    let missing = emu.fastly().store("no-such-store");
    let journal = journal_path("down.journal");
    let error = copy(&source, &missing, &JobOptions::new().journal(&journal))
        .await
        .unwrap_err();
    assert!(matches!(error, edgekv::Error::Transport(_)), "{error:?}");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(!text.contains(r#""step":"chunk""#), "{text}");
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

/// Metadata crosses only when it would not change: Fastly text that is JSON but not in its
/// compact form (key order, spaces) is reported, as text that is not JSON is.
#[tokio::test]
async fn metadata_that_would_change_is_reported_not_converted() {
    let source = MemoryStore::new(Capabilities::fastly());
    let metas = [r#"{"a":1}"#, r#"{"b":1,"a":2}"#, r#"{"a": 1}"#];
    let items = metas
        .iter()
        .enumerate()
        .map(|(i, m)| BulkItem::new(format!("k{i}"), "v").metadata(Metadata::Text(m.to_string())));
    seed(&source, items.collect()).await;
    let destination = MemoryStore::new(Capabilities::cloudflare());
    let report = copy(&source, &destination, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!(report.copied, 1);
    let mut failed: Vec<&str> = report.failed.iter().map(|f| f.key.as_str()).collect();
    failed.sort_unstable();
    assert_eq!(failed, ["k1", "k2"]);
}

/// A dry run gives its plan even over the guard; a directory import never follows a link.
#[tokio::test]
async fn a_dry_run_plans_past_the_guard_and_an_import_follows_no_link() {
    use edgekv::transfer::{Format, export, import, sync};

    let source = MemoryStore::new(Capabilities::fastly());
    let destination = MemoryStore::new(Capabilities::fastly());
    seed(&destination, numbered(10)).await;
    let plan = sync(&source, &destination, &JobOptions::new().dry_run(true))
        .await
        .unwrap();
    assert_eq!((plan.to_delete, plan.deleted), (10, 0));
    assert_eq!(destination.len(), 10);

    let root = journal_path("links");
    let dir = root.join("export");
    export(&destination, &dir, Format::Directory, &JobOptions::new())
        .await
        .unwrap();
    assert!(
        export(&destination, &dir, Format::Directory, &JobOptions::new())
            .await
            .is_err(),
        "not into a full directory"
    );
    let secret = root.join("secret");
    std::fs::write(&secret, "not for upload").unwrap();
    let value = dir.join(edgekv_escaped("p/00003"));
    std::fs::remove_file(&value).unwrap();
    std::os::unix::fs::symlink(&secret, &value).unwrap();
    let back = MemoryStore::new(Capabilities::fastly());
    let report = import(&dir, Format::Directory, &back, &JobOptions::new())
        .await
        .unwrap();
    assert_eq!(report.copied, 9);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].key, "p/00003");
    assert!(
        report.failed[0].reason.contains("not a regular file"),
        "{:?}",
        report.failed[0]
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The directory format's name of a short key, as documented: percent-encoded but for `a-z`,
/// `0-9`, `-` and `_`.
fn edgekv_escaped(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An import with a journal, stopped after its first chunk and run again, goes on after the
/// chunks it finished: the bulk writes of both runs are at most the file's chunks plus the one
/// in flight, and every entry arrives once.
#[tokio::test]
async fn a_stopped_import_resumes_from_its_journal() {
    use edgekv::transfer::{Format, import};

    let dir = journal_path("import");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lines.ndjson");
    let lines: String = (0..3_000)
        .map(|i| format!("{{\"key\":\"p/{i:05}\",\"value\":\"dmFsdWU=\"}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let journal = dir.join("import.journal");
    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    emu.clear_requests();

    let options = JobOptions::new().journal(&journal);
    let first = {
        let (file, namespace, options) = (file.clone(), namespace.clone(), options.clone());
        tokio::spawn(async move { import(&file, Format::FastlyNdjson, &namespace, &options).await })
    };
    while chunks_journaled(&journal) < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.abort();
    let _ = first.await;
    let before = bulk_writes(&emu);
    assert!(before < 3, "{before} of 3 chunks written before the stop");

    let report = import(&file, Format::FastlyNdjson, &namespace, &options)
        .await
        .unwrap();
    assert_eq!(
        (report.listed, report.copied, report.failed.len()),
        (3_000, 3_000, 0)
    );
    let writes = bulk_writes(&emu);
    assert!(writes <= 3 + 1, "{writes} bulk writes for 3 chunks");
    assert!(
        writes - before <= 2,
        "{before} then {writes}: nothing was resumed"
    );
    let keys: Vec<_> = KvStore::list(&namespace, "", None)
        .map_ok(|page| page.keys.len())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys.iter().sum::<usize>(), 3_000);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An export killed mid-chunk leaves the file longer than its journal says; one killed after
/// its last chunk leaves it without its end. Run again, each ends as the file an uninterrupted
/// export writes, byte for byte, in both file formats.
#[tokio::test]
async fn a_resumed_export_cuts_its_file_back_to_the_journal_and_goes_on() {
    use edgekv::transfer::{Format, export};

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(2_500)).await;
    let dir = journal_path("cut-back");
    std::fs::create_dir_all(&dir).unwrap();
    for (format, name) in [
        (Format::Wrangler, "all.json"),
        (Format::FastlyNdjson, "all.ndjson"),
    ] {
        let whole = dir.join(format!("whole-{name}"));
        export(&source, &whole, format, &JobOptions::new())
            .await
            .unwrap();
        let whole = std::fs::read(&whole).unwrap();

        // Which journal lines a kill left: the last chunk's record and the end dropped (it was
        // being written), or only the end (it was about to be recorded).
        for dropped in [r#""seq":2,"#, r#""step":"finished""#] {
            let file = dir.join(name);
            let journal = dir.join(format!("{name}.journal"));
            let options = JobOptions::new().journal(&journal);
            let first = export(&source, &file, format, &options).await.unwrap();
            assert_eq!(first.copied, 2_500);
            let text = std::fs::read_to_string(&journal).unwrap();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains(dropped) && !l.contains(r#""step":"finished""#))
                .collect();
            std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
            // What a killed run may have written past the journal: half a line.
            let mut torn = std::fs::read(&file).unwrap();
            torn.extend_from_slice(br#"{"key":"p/0"#);
            std::fs::write(&file, torn).unwrap();

            let again = export(&source, &file, format, &options).await.unwrap();
            assert_eq!((again.listed, again.copied), (2_500, 2_500), "{dropped}");
            assert!(
                std::fs::read(&file).unwrap() == whole,
                "{format:?}, {dropped}: the resumed file differs from an uninterrupted one"
            );
            std::fs::remove_file(&journal).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The time a job waits for a budget is in its progress and report: a client limited to one
/// request per 150 ms waits for the second and later requests of a copy, and says so.
#[tokio::test]
async fn a_job_reports_its_waits_for_a_budget() {
    use edgekv::policy::{ClientLimit, RequestPolicy};

    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let values = (0..150).map(|i| (format!("p/{i:03}"), b"v".to_vec()));
    emu.seed_cloudflare(namespace.id(), values).unwrap();
    let mut policy = RequestPolicy::default();
    policy.client_limit = Some(ClientLimit::new(1, Duration::from_millis(150)));
    let limited = emu.cloudflare_builder().policy(policy).build().unwrap();
    let source = limited.namespace(namespace.id());
    let destination = MemoryStore::new(Capabilities::fastly());

    let seen = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let options = JobOptions::new().progress({
        let seen = seen.clone();
        move |progress| *seen.lock().unwrap() = progress.budget_wait
    });
    let report = copy(&source, &destination, &options).await.unwrap();
    // A listing page and two bulk reads: the second and third wait about 150 ms each.
    assert_eq!((report.copied, report.source_requests), (150, 3));
    assert!(
        report.budget_wait >= Duration::from_millis(200),
        "{:?}",
        report.budget_wait
    );
    assert!(*seen.lock().unwrap() >= Duration::from_millis(200));

    let unlimited = copy(&namespace, &destination, &JobOptions::new())
        .await
        .unwrap();
    assert!(
        unlimited.budget_wait < Duration::from_millis(10),
        "{:?}",
        unlimited.budget_wait
    );
}

/// `delete_prefix` as a job, on both providers: a dry run names the keys and deletes nothing;
/// stopped after its first page and run again with its journal, it ends with every key under
/// the prefix gone and the others kept, its report adding both runs' pages.
#[tokio::test]
async fn a_prefix_deletion_job_dry_runs_and_resumes_on_both_providers() {
    use edgekv::transfer::delete_prefix;

    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    let keys = || {
        let doomed = (0..2_500).map(|i| (format!("p/{i:05}"), b"v".to_vec()));
        doomed.chain((0..10).map(|i| (format!("q/{i}"), b"v".to_vec())))
    };
    emu.seed_cloudflare(namespace.id(), keys()).unwrap();
    emu.seed_fastly(store.id(), keys()).unwrap();
    let stores: [Arc<dyn KvStore>; 2] = [Arc::new(namespace), Arc::new(store)];
    for store in stores {
        let count = async |prefix: &str| {
            let pages: Vec<usize> = store
                .list(prefix, None)
                .map_ok(|page| page.keys.len())
                .try_collect()
                .await
                .unwrap();
            pages.iter().sum::<usize>()
        };
        let plan = JobOptions::new().prefix("p/").dry_run(true);
        let planned = delete_prefix(store.as_ref(), &plan).await.unwrap();
        assert_eq!((planned.listed, planned.deleted), (2_500, 0));
        assert_eq!(planned.to_delete_keys.len(), 2_500);
        assert_eq!(planned.to_delete_keys[0], "p/00000");
        assert_eq!(count("p/").await, 2_500, "a dry run deleted");

        let dir = journal_path("delete");
        let journal = dir.join("delete.journal");
        std::fs::create_dir_all(&dir).unwrap();
        let options = JobOptions::new().prefix("p/").journal(&journal);
        let first = {
            let (store, options) = (store.clone(), options.clone());
            tokio::spawn(async move { delete_prefix(store.as_ref(), &options).await })
        };
        while chunks_journaled(&journal) < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first.abort();
        let _ = first.await;
        // The report adds the pages the first run journaled to what is left, once deletes
        // that were in flight at the stop have landed.
        let mut left = count("p/").await as u64;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = count("p/").await as u64;
            if now == left {
                break;
            }
            left = now;
        }
        let journaled: u64 = std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|step| step["step"] == "chunk")
            .map(|step| step["copied"].as_u64().unwrap())
            .sum();
        assert!(journaled >= 1_000);
        let report = delete_prefix(store.as_ref(), &options).await.unwrap();
        assert_eq!((count("p/").await, count("q/").await), (0, 10));
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.deleted, journaled + left, "{report:?}");
        assert_eq!(report.listed, report.deleted);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A copy killed after journaling its last chunk but before recording its end does nothing
/// more when run again: its report is the first run's, not a second listing's.
#[tokio::test]
async fn a_copy_killed_before_recording_its_end_lists_nothing_again() {
    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(2_500)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    let journal = journal_path("end.journal");
    let options = JobOptions::new().journal(&journal);
    copy(&source, &destination, &options).await.unwrap();
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""step":"finished""#))
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    seed(&source, vec![BulkItem::new("p/late", "after the end")]).await;

    let again = copy(&source, &destination, &options).await.unwrap();
    assert_eq!((again.listed, again.copied), (2_500, 2_500));
    assert_eq!(
        destination.len(),
        2_500,
        "the job had ended: nothing listed again"
    );
    let ended = std::fs::read_to_string(&journal).unwrap();
    assert!(
        ended.contains(r#""step":"finished""#),
        "the end is recorded"
    );
    let _ = std::fs::remove_dir_all(journal.parent().unwrap());
}

/// A key the destination refuses is reported and the job goes on, even when it is all its
/// chunk holds (a batch answered 400); a request that fails as a whole (a 503 to the end of the
/// retries) stops the job, so a run again redoes the chunk instead of reporting its keys lost.
#[tokio::test]
async fn a_refused_key_is_reported_and_a_failed_request_stops_the_job() {
    use edgekv::Failure;

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, vec![BulkItem::new("only", "v")]).await;
    for (status, refused) in [(400, true), (503, false)] {
        let server = httpmock::MockServer::start_async().await;
        let batch = server
            .mock_async(|when, then| {
                when.method("PUT").path("/resources/stores/kv/s1/batch");
                then.status(status).body("no");
            })
            .await;
        let fastly = edgekv::fastly::Client::builder("token")
            .base_url(server.base_url())
            .policy(patient())
            .build()
            .unwrap();
        let store = fastly.store("s1");
        let journal = journal_path("refused.journal");
        let outcome = copy(&source, &store, &JobOptions::new().journal(&journal)).await;
        assert!(batch.calls_async().await > 0);
        let journaled = chunks_journaled(&journal);
        if refused {
            let report = outcome.unwrap();
            assert_eq!((report.copied, report.failed.len()), (0, 1));
            assert_eq!(report.failed[0].failure, Failure::Refused);
            assert_eq!(journaled, 1, "the chunk is done: its key was refused");
        } else {
            assert!(outcome.is_err(), "{outcome:?}");
            assert_eq!(journaled, 0, "the chunk is not done: a run again redoes it");
        }
        let _ = std::fs::remove_dir_all(journal.parent().unwrap());
    }
}

/// A dry run writes nothing and says what it would do: a copy and an export how many keys,
/// an import which of the file's entries the destination would refuse. Import and prefix
/// deletion are bounded in time like a copy: Fastly's deletes are a request a key.
#[tokio::test]
async fn every_job_dry_runs_and_keeps_to_its_time_bound() {
    use edgekv::error::InvalidInput;
    use edgekv::transfer::{Format, delete_prefix, export, import};

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, numbered(1_500)).await;
    let destination = MemoryStore::new(Capabilities::fastly());
    let dry = JobOptions::new().dry_run(true);
    let copied = copy(&source, &destination, &dry).await.unwrap();
    assert_eq!((copied.listed, copied.copied), (1_500, 0));
    let dir = journal_path("dry");
    let file = dir.join("out.ndjson");
    let exported = export(&source, &file, Format::FastlyNdjson, &dry)
        .await
        .unwrap();
    assert_eq!(exported.listed, 1_500);
    assert!(!file.exists(), "a dry export writes no file");

    std::fs::create_dir_all(&dir).unwrap();
    let long = "k".repeat(600); // over Cloudflare's 512 bytes
    let lines = format!(
        "{{\"key\":\"a\",\"value\":\"YQ==\"}}\n{{\"key\":\"{long}\",\"value\":\"YQ==\"}}\nnot json\n"
    );
    std::fs::write(&file, lines).unwrap();
    let target = MemoryStore::new(Capabilities::cloudflare());
    let journal = dir.join("import.journal");
    let checked = import(
        &file,
        Format::FastlyNdjson,
        &target,
        &dry.clone().journal(&journal),
    )
    .await
    .unwrap();
    let failed: Vec<u64> = checked.failed.iter().map(|f| f.index).collect();
    assert_eq!((checked.listed, checked.copied, failed), (3, 0, vec![1, 2]));
    assert!(
        target.is_empty() && !journal.exists(),
        "a dry import writes nothing"
    );

    // 1,500 Fastly deletes at 1,000 an hour: 90 minutes.
    let fastly = MemoryStore::new(Capabilities::fastly());
    seed(&fastly, numbered(1_500)).await;
    let hour = JobOptions::new().max_duration(Duration::from_secs(3_600));
    let refused = delete_prefix(&fastly, &hour).await.unwrap_err();
    assert!(
        matches!(
            refused,
            edgekv::Error::InvalidInput(InvalidInput::JobTooLong {
                estimate_secs: 5_400,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(fastly.len(), 1_500, "nothing deleted");
    // The same on Cloudflare: 2 pages listed and 2 bulk deletes, 1 s of its budget.
    let report = delete_prefix(&source, &hour).await.unwrap();
    assert_eq!(report.deleted, 1_500);
    // An import of 2,500,000 entries is 2,500 Fastly batches: 2.5 hours.
    let refused = import(
        &file,
        Format::FastlyNdjson,
        &fastly,
        &hour.clone().expected_keys(2_500_000),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            refused,
            edgekv::Error::InvalidInput(InvalidInput::JobTooLong { .. })
        ),
        "{refused:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A journal is one job's: an import's journal is refused once its file changed (it would
/// read past entries that are no longer the ones done), and a second run on a journal a
/// running job holds is refused rather than interleaved with it.
#[tokio::test]
async fn a_journal_is_refused_for_a_changed_file_and_while_in_use() {
    use edgekv::transfer::{Format, import};

    let dir = journal_path("stale");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.ndjson");
    std::fs::write(&file, "{\"key\":\"a\",\"value\":\"YQ==\"}\n").unwrap();
    let journal = dir.join("import.journal");
    let options = JobOptions::new().journal(&journal);
    let store = MemoryStore::new(Capabilities::fastly());
    import(&file, Format::FastlyNdjson, &store, &options)
        .await
        .unwrap();
    // The same size, another key: only its time of change tells (set a second on, as a
    // coarse clock might not).
    std::fs::write(&file, "{\"key\":\"b\",\"value\":\"YQ==\"}\n").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(1);
    let changed = std::fs::File::options().write(true).open(&file).unwrap();
    changed.set_modified(later).unwrap();
    drop(changed);
    let stale = import(&file, Format::FastlyNdjson, &store, &options).await;
    assert!(stale.is_err(), "{stale:?}");
    assert_eq!(store.len(), 1);

    // A copy holding its journal (its destination slowed by a client limit) and a second run.
    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let values = (0..10).map(|i| (format!("k{i}"), b"v".to_vec()));
    emu.seed_cloudflare(namespace.id(), values).unwrap();
    let mut policy = edgekv::policy::RequestPolicy::default();
    policy.client_limit = Some(edgekv::policy::ClientLimit::new(1, Duration::from_secs(30)));
    let slow = emu.cloudflare_builder().policy(policy).build().unwrap();
    let source = Arc::new(slow.namespace(namespace.id()));
    let held = dir.join("copy.journal");
    let running = {
        let (source, options) = (source.clone(), JobOptions::new().journal(&held));
        tokio::spawn(async move {
            let destination = MemoryStore::new(Capabilities::fastly());
            copy(source.as_ref(), &destination, &options).await
        })
    };
    // Locked before its first record is written.
    while !std::fs::read_to_string(&held).is_ok_and(|t| t.contains("started")) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = copy(
        source.as_ref(),
        &MemoryStore::new(Capabilities::fastly()),
        &JobOptions::new().journal(&held),
    )
    .await
    .unwrap_err();
    let chain = error_chain(&second);
    assert!(chain.contains("in use by another job"), "{chain}");
    running.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory export writes each file beside its name and renames it over: a link planted at
/// an entry's name (here between a killed run and the run again) is replaced, never written
/// through.
#[tokio::test]
async fn a_directory_export_never_writes_through_a_planted_link() {
    use edgekv::transfer::{Format, export};

    let source = MemoryStore::new(Capabilities::cloudflare());
    seed(&source, vec![BulkItem::new("k", "new value")]).await;
    let dir = journal_path("links");
    let out = dir.join("export");
    let outside = dir.join("outside.txt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&outside, "keep me").unwrap();
    let journal = dir.join("export.journal");
    let options = JobOptions::new().journal(&journal);
    export(&source, &out, Format::Directory, &options)
        .await
        .unwrap();
    // As if killed before its chunk was journaled, and a link planted meanwhile.
    let text = std::fs::read_to_string(&journal).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""step":"#) || l.contains("started"))
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    std::fs::remove_file(out.join("k")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("k")).unwrap();

    let again = export(&source, &out, Format::Directory, &options)
        .await
        .unwrap();
    assert_eq!(again.copied, 1);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    let entry = std::fs::symlink_metadata(out.join("k")).unwrap();
    assert!(entry.file_type().is_file());
    assert_eq!(std::fs::read(out.join("k")).unwrap(), b"new value");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sync's report counts every request it sent to each side, the passes that find the
/// destination's extra keys and the deletes included: what each emulated API served.
#[tokio::test]
async fn a_sync_counts_every_request_it_sends() {
    use edgekv::transfer::sync;

    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    let values = (0..150).map(|i| (format!("p/{i:03}"), b"v".to_vec()));
    emu.seed_cloudflare(namespace.id(), values).unwrap();
    let extra = (0..5).map(|i| (format!("p/extra-{i}"), b"x".to_vec()));
    emu.seed_fastly(store.id(), extra).unwrap();
    emu.clear_requests();

    let options = JobOptions::new().max_delete_percent(100);
    let report = sync(&namespace, &store, &options).await.unwrap();
    assert_eq!((report.copy.copied, report.deleted), (150, 5));
    let served = |api: Api| emu.requests().iter().filter(|r| r.api == api).count() as u64;
    assert_eq!(report.source_requests, served(Api::Cloudflare));
    assert_eq!(report.destination_requests, served(Api::Fastly));
    assert!(report.destination_requests > report.copy.destination_requests);
}

/// A batch refused whole for one bad entry (Fastly answers 400 naming no line; Cloudflare's
/// bulk write fails all for one) is sent again in halves, down to the entry refused alone:
/// every other key is written, and only the bad one is reported.
#[tokio::test]
async fn a_batch_refused_whole_is_split_until_only_the_bad_entry_is_refused() {
    let source = MemoryStore::new(Capabilities::cloudflare());
    let mut items: Vec<BulkItem> = (0..10)
        .map(|i| BulkItem::new(format!("a{i}"), "v"))
        .collect();
    items.push(BulkItem::new("bad", "v"));
    seed(&source, items).await;
    let server = httpmock::MockServer::start_async().await;
    let refused = server
        .mock_async(|when, then| {
            when.method("PUT")
                .path("/resources/stores/kv/s1/batch")
                .body_includes(r#""key":"bad""#);
            then.status(400).body("no");
        })
        .await;
    let written = server
        .mock_async(|when, then| {
            when.method("PUT")
                .path("/resources/stores/kv/s1/batch")
                .body_excludes(r#""key":"bad""#);
            then.status(200).body("");
        })
        .await;
    let fastly = edgekv::fastly::Client::builder("token")
        .base_url(server.base_url())
        .build()
        .unwrap();
    let report = copy(&source, &fastly.store("s1"), &JobOptions::new())
        .await
        .unwrap();
    assert_eq!(report.copied, 10, "{report:?}");
    let failed: Vec<&str> = report.failed.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(failed, ["bad"]);
    // 11 entries: the bad one is in one half at each of 4 levels; the other halves pass.
    assert_eq!(refused.calls_async().await, 5);
    assert_eq!(written.calls_async().await, 4);
}
