//! Hostile answers (issue 11): scripted loopback servers answer exactly what an attacker, or a
//! broken proxy, would, and both facades must stay bounded in memory and time, never misreport,
//! never loop, never panic, and never put our key, value, metadata or credential in an error.
//!
//! - Memory cases each run alone in a child process (this binary re-run on `memory_child`),
//!   which measures its own peak RSS growth around the call; a watchdog stops a child whose RSS
//!   runs away, so a failing case costs hundreds of MiB, not gigabytes.
//! - Drip cases use bounds of about 1 s and assert the timeout error; the 20 s guard around them
//!   only catches a hang.
//! - Redaction cases produce one error of each variant and stage through real calls against
//!   servers that echo the request (key raw and percent-encoded, value, metadata, credential) in
//!   their bodies, headers and messages.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use edgekv::Error;
use edgekv::policy::RequestPolicy;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use crate::support::envelope::{cf_failure, cf_ok};
use crate::support::hostile::{self, Answer, Body, HostileServer, Request, bodies};
use crate::support::{CF_NAMESPACE, FASTLY_STORE, child, cloudflare_at, fast_policy, fastly_at};

const TOKEN: &str = "plantedTOKENc0ffee";
const MIB: u64 = 1 << 20;
/// Only a guard against hanging; no test relies on it for timing.
const GUARD: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Clients and small helpers

/// [`fast_policy`] with one attempt per call.
fn one_attempt() -> RequestPolicy {
    let mut policy = fast_policy();
    policy.retry.max_attempts = 1;
    policy
}

fn cloudflare(url: &str, policy: RequestPolicy) -> edgekv::cloudflare::Client {
    cloudflare_at(url, TOKEN, policy)
}

/// The test namespace, told it URL-decodes keys (so no lookup precedes a call).
fn namespace(client: &edgekv::cloudflare::Client) -> edgekv::cloudflare::Namespace {
    client.namespace(CF_NAMESPACE).with_url_encoding(true)
}

fn fastly(url: &str, policy: RequestPolicy) -> edgekv::fastly::Client {
    fastly_at(url, TOKEN, policy)
}

async fn guarded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: still running after {GUARD:?} (hangs)"))
}

fn variant(error: &Error) -> &'static str {
    match error {
        Error::InvalidInput(_) => "InvalidInput",
        Error::Transport(_) => "Transport",
        Error::Api(_) => "Api",
        Error::BadResponse(_) => "BadResponse",
        _ => "another variant",
    }
}

fn status(error: &Error) -> Option<u16> {
    error.status().map(|s| s.as_u16())
}

/// What a call ended with, for failure messages (never the value itself).
fn outcome<T>(result: &Result<T, Error>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(e) => format!(
            "Err({}, status {:?}, codes {:?}, timeout {}, too large {}): {e}",
            variant(e),
            status(e),
            e.codes(),
            e.is_timeout(),
            e.is_answer_too_large()
        ),
    }
}

fn check(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failure(s):\n- {}",
        failures.len(),
        failures.join("\n- ")
    );
}

// ---------------------------------------------------------------------------------------------
// Memory: each case alone in a child process

const CASE_VAR: &str = "EDGEKV_HOSTILE_MEMORY_CASE";

/// The entry point of a child: does nothing unless the case variable names a case.
#[test]
fn memory_child() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), memory_case(&case))
            .await
            .unwrap_or_else(|_| panic!("memory case {case}: still running after 120 s"));
    });
    println!("memory case {case}: passed");
}

/// Runs `case` in a child process: its exit status, stdout and stderr.
fn run_child(case: &str) -> (std::process::ExitStatus, String, String) {
    let name = child::test_name(module_path!(), "memory_child");
    let output = child::run_alone(&name, (CASE_VAR, case));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for line in stdout
        .lines()
        .filter_map(|l| l.find("memory case").map(|at| &l[at..]))
    {
        println!("{line}");
    }
    (output.status, stdout, stderr)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs `case` in a child process and fails with its output unless it passed.
fn in_child(case: &str) {
    let (status, stdout, stderr) = run_child(case);
    assert!(
        status.success() && stdout.contains(&format!("memory case {case}: passed")),
        "memory case {case} failed in its child process ({status}):\n--- stdout\n{}\n--- stderr\n{}",
        tail(&stdout),
        tail(&stderr)
    );
}

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Peak RSS growth from now on. A watchdog thread ends the process as soon as RSS grows well
/// past the bound, so a case that reads a hostile answer whole fails fast and cheaply.
struct Meter {
    case: String,
    baseline: u64,
    bound: u64,
    stop: Arc<AtomicBool>,
}

impl Meter {
    fn start(case: &str, bound: u64) -> Meter {
        let baseline = proc_status("VmRSS");
        // "5" resets the peak (VmHWM) to the current RSS, so earlier peaks do not count.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let stop = Arc::new(AtomicBool::new(false));
        let kill_at = baseline + (4 * bound).max(256 * MIB);
        let (flag, name) = (stop.clone(), case.to_string());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let rss = proc_status("VmRSS");
                if rss > kill_at {
                    println!(
                        "memory case {name}: FAILED: RSS grew by {} MiB during the call, past {} \
                         MiB (bound {} MiB); stopped before it exhausts memory",
                        (rss - baseline) / MIB,
                        (kill_at - baseline) / MIB,
                        bound / MIB
                    );
                    std::process::exit(3);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Meter {
            case: case.to_string(),
            baseline,
            bound,
            stop,
        }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let growth = proc_status("VmHWM").saturating_sub(self.baseline);
        println!(
            "memory case {}: peak RSS grew {:.1} MiB (bound {} MiB)",
            self.case,
            growth as f64 / MIB as f64,
            self.bound / MIB
        );
        assert!(
            growth < self.bound,
            "memory case {}: peak RSS grew {} MiB, bound {} MiB",
            self.case,
            growth / MIB,
            self.bound / MIB
        );
    }
}

/// Runs `call` between the meter's start and finish.
async fn measured<T>(case: &str, bound: u64, call: impl Future<Output = T>) -> T {
    let meter = Meter::start(case, bound);
    let out = call.await;
    meter.finish();
    out
}

fn expect_status<T>(case: &str, result: &Result<T, Error>, expected: u16) {
    match result {
        Err(e) if status(e) == Some(expected) && !matches!(e, Error::Transport(_)) => {}
        other => panic!(
            "memory case {case}: expected an error with status {expected}, got {}",
            outcome(other)
        ),
    }
}

fn expect_too_large<T>(case: &str, result: &Result<T, Error>) {
    match result {
        Err(e) if e.is_answer_too_large() && matches!(e, Error::BadResponse(_)) => {}
        other => panic!(
            "memory case {case}: expected a BadResponse with is_answer_too_large(), got {}",
            outcome(other)
        ),
    }
}

async fn memory_case(case: &str) {
    let bound = 64 * MIB;
    match case {
        "cloudflare_500_with_a_1_gib_body" => {
            let answer = Answer::new(500, bodies::one_gib()).header("content-type", "text/html");
            let server = HostileServer::always(answer).await;
            let client = cloudflare(&server.url(), fast_policy());
            let result = measured(case, bound, client.get_namespace(CF_NAMESPACE)).await;
            expect_status(case, &result, 500);
        }
        "fastly_500_with_a_1_gib_body" => {
            let answer = Answer::new(500, bodies::one_gib()).header("content-type", "text/html");
            let server = HostileServer::always(answer).await;
            let client = fastly(&server.url(), fast_policy());
            let result = measured(case, bound, client.get_store(FASTLY_STORE)).await;
            expect_status(case, &result, 500);
        }
        "cloudflare_endless_chunked_400" => {
            let answer = Answer::new(400, bodies::endless_cloudflare_error()).json_type();
            let server = HostileServer::always(answer).await;
            let client = cloudflare(&server.url(), fast_policy());
            let ns = namespace(&client);
            let result = measured(case, bound, ns.get("k")).await;
            expect_status(case, &result, 400);
        }
        "fastly_endless_chunked_503" => {
            let answer =
                Answer::new(503, bodies::endless_text()).header("content-type", "text/html");
            let server = HostileServer::always(answer).await;
            let client = fastly(&server.url(), fast_policy());
            let store = client.store(FASTLY_STORE);
            let result = measured(case, bound, store.get("k")).await;
            expect_status(case, &result, 503);
        }
        "cloudflare_endless_key_page" => {
            let answer = Answer::new(200, bodies::endless_cloudflare_key_page()).json_type();
            let server = HostileServer::always(answer).await;
            let client = cloudflare(&server.url(), fast_policy());
            let ns = namespace(&client);
            let call = async {
                let mut keys = ns.keys(edgekv::cloudflare::ListKeys::new());
                keys.try_next().await
            };
            let result = measured(case, bound, call).await;
            expect_too_large(case, &result);
        }
        "cloudflare_endless_namespace_page" => {
            let answer = Answer::new(200, bodies::endless_cloudflare_namespace_page()).json_type();
            let server = HostileServer::always(answer).await;
            let client = cloudflare(&server.url(), fast_policy());
            let call = async { client.namespaces(None).try_next().await };
            let result = measured(case, bound, call).await;
            expect_too_large(case, &result);
        }
        "cloudflare_endless_json_answer" => {
            let answer = Answer::new(200, bodies::endless_cloudflare_namespace()).json_type();
            let server = HostileServer::always(answer).await;
            let client = cloudflare(&server.url(), fast_policy());
            let result = measured(case, bound, client.get_namespace(CF_NAMESPACE)).await;
            expect_too_large(case, &result);
        }
        "fastly_endless_key_page" => {
            let answer = Answer::new(200, bodies::endless_fastly_key_page()).json_type();
            let server = HostileServer::always(answer).await;
            let client = fastly(&server.url(), fast_policy());
            let store = client.store(FASTLY_STORE);
            let call = async {
                let mut keys = store.keys(edgekv::fastly::ListKeys::new());
                keys.try_next().await
            };
            let result = measured(case, bound, call).await;
            expect_too_large(case, &result);
        }
        "fastly_endless_batch_answer" => {
            let answer = Answer::new(400, bodies::endless_fastly_batch_errors()).json_type();
            let server = HostileServer::always(answer).await;
            let client = fastly(&server.url(), fast_policy());
            let store = client.store(FASTLY_STORE);
            let entries: Vec<_> = (0..10)
                .map(|i| edgekv::fastly::BulkEntry::new(format!("k{i}"), "v"))
                .collect();
            let options = edgekv::fastly::BulkOptions::default();
            let result = measured(case, bound, store.bulk_write(entries, &options)).await;
            match &result {
                Ok(report) if report.written == 0 && report.failed.len() == 10 => {}
                Ok(report) => panic!(
                    "memory case {case}: a batch answered 400 reported {} written, {} failed of 10",
                    report.written,
                    report.failed.len()
                ),
                Err(_) => {}
            }
        }
        "cloudflare_bytes_over_a_1_mib_cap" => {
            let answer = Answer::new(200, bodies::one_gib())
                .header("content-type", "application/octet-stream");
            let server = HostileServer::always(answer).await;
            let mut policy = fast_policy();
            policy.read_limits.value_bytes = Some(MIB);
            let client = cloudflare(&server.url(), policy);
            let ns = namespace(&client);
            let call = async {
                let value = ns.get("k").await?.expect("the value exists");
                value.bytes().await
            };
            let result = measured(case, 16 * MIB, call).await;
            expect_too_large(case, &result);
        }
        "fastly_bytes_over_a_1_mib_cap" => {
            let answer = Answer::new(200, bodies::endless_value())
                .header("content-type", "application/octet-stream")
                .header("generation", "1");
            let server = HostileServer::always(answer).await;
            let mut policy = fast_policy();
            policy.read_limits.value_bytes = Some(MIB);
            let client = fastly(&server.url(), policy);
            let store = client.store(FASTLY_STORE);
            let call = async {
                let item = store.get("k").await?.expect("the item exists");
                item.bytes().await
            };
            let result = measured(case, 16 * MIB, call).await;
            expect_too_large(case, &result);
        }
        "self_test_reading_1_gib_whole" => {
            // Not a case of the crate: proves the meter and its watchdog catch a runaway read.
            let answer = Answer::new(200, bodies::one_gib());
            let server = HostileServer::always(answer).await;
            let http = edgekv::http::client_builder()
                .build()
                .expect("an HTTP client");
            let call = async { http.get(server.url()).send().await?.bytes().await };
            let _ = measured(case, bound, call).await;
        }
        other => panic!("no memory case {other}"),
    }
}

/// The harness itself: a child that reads a 1 GiB answer whole is stopped by its watchdog and
/// reported, long before it holds a gigabyte.
#[test]
fn memory_watchdog_stops_a_child_reading_an_answer_whole() {
    let (status, stdout, stderr) = run_child("self_test_reading_1_gib_whole");
    assert!(
        status.code() == Some(3) && stdout.contains("FAILED: RSS grew"),
        "the watchdog did not stop a runaway child ({status}):\n--- stdout\n{}\n--- stderr\n{}",
        tail(&stdout),
        tail(&stderr)
    );
}

#[test]
fn memory_cloudflare_500_with_a_1_gib_body() {
    in_child("cloudflare_500_with_a_1_gib_body");
}

#[test]
fn memory_fastly_500_with_a_1_gib_body() {
    in_child("fastly_500_with_a_1_gib_body");
}

#[test]
fn memory_cloudflare_endless_chunked_400() {
    in_child("cloudflare_endless_chunked_400");
}

#[test]
fn memory_fastly_endless_chunked_503() {
    in_child("fastly_endless_chunked_503");
}

#[test]
fn memory_cloudflare_endless_key_page() {
    in_child("cloudflare_endless_key_page");
}

#[test]
fn memory_cloudflare_endless_namespace_page() {
    in_child("cloudflare_endless_namespace_page");
}

#[test]
fn memory_cloudflare_endless_json_answer() {
    in_child("cloudflare_endless_json_answer");
}

#[test]
fn memory_fastly_endless_key_page() {
    in_child("fastly_endless_key_page");
}

#[test]
fn memory_fastly_endless_batch_answer() {
    in_child("fastly_endless_batch_answer");
}

#[test]
fn memory_cloudflare_bytes_over_a_1_mib_cap() {
    in_child("cloudflare_bytes_over_a_1_mib_cap");
}

#[test]
fn memory_fastly_bytes_over_a_1_mib_cap() {
    in_child("fastly_bytes_over_a_1_mib_cap");
}

// ---------------------------------------------------------------------------------------------
// Drips: bounded by about 1 s, asserted as timeouts

const DRIP: Duration = Duration::from_millis(500);

fn dripped(status: u16, body: &[u8]) -> Answer {
    Answer::new(
        status,
        Body::Drip {
            bytes: body.to_vec(),
            every: DRIP,
            declared: Some(body.len() as u64),
        },
    )
    .json_type()
}

fn namespace_json() -> Vec<u8> {
    cf_ok(json!({"id": CF_NAMESPACE, "title": "a namespace with a long enough title to drip", "supports_url_encoding": true}))
        .to_string()
        .into_bytes()
}

fn expect_timeout<T>(what: &str, result: &Result<T, Error>) {
    match result {
        Err(e) if e.is_timeout() => {}
        other => panic!("{what}: expected a timeout, got {}", outcome(other)),
    }
}

#[tokio::test]
async fn drip_json_body_ends_at_the_attempt_timeout() {
    let server = HostileServer::always(dripped(200, &namespace_json())).await;
    let mut policy = one_attempt();
    policy.timeouts.attempt = Duration::from_secs(1);
    let client = cloudflare(&server.url(), policy);
    let result = guarded("a dripped JSON answer", client.get_namespace(CF_NAMESPACE)).await;
    expect_timeout("a JSON answer dripped past timeouts.attempt", &result);
}

#[tokio::test]
async fn drip_json_body_ends_at_the_call_deadline() {
    let server = HostileServer::always(dripped(200, &namespace_json())).await;
    let mut policy = fast_policy();
    policy.retry.deadline = Some(Duration::from_secs(1));
    let client = cloudflare(&server.url(), policy);
    let result = guarded("a dripped JSON answer", client.get_namespace(CF_NAMESPACE)).await;
    expect_timeout("a JSON answer dripped past the call's deadline", &result);
}

#[tokio::test]
async fn drip_error_body_ends_at_the_attempt_timeout() {
    let body = json!({"msg": "Internal server error, dripped one byte at a time", "detail": "x"});
    let server = HostileServer::always(dripped(500, body.to_string().as_bytes())).await;
    let mut policy = one_attempt();
    policy.timeouts.attempt = Duration::from_secs(1);
    let client = fastly(&server.url(), policy);
    let result = guarded("a dripped error body", client.get_store(FASTLY_STORE)).await;
    expect_timeout("an error body dripped past timeouts.attempt", &result);
}

#[tokio::test]
async fn drip_error_body_ends_at_the_call_deadline() {
    let body = cf_failure(10001, "a bad request, dripped one byte at a time");
    let server = HostileServer::always(dripped(400, body.to_string().as_bytes())).await;
    let mut policy = fast_policy();
    policy.retry.deadline = Some(Duration::from_secs(1));
    let client = cloudflare(&server.url(), policy);
    let ns = namespace(&client);
    let result = guarded("a dripped error body", ns.get("k")).await;
    expect_timeout("an error body dripped past the call's deadline", &result);
}

/// A value dripped faster than `idle_read` never trips it: only a total bound ends it.
fn dripped_value() -> Answer {
    Answer::new(
        200,
        Body::Drip {
            bytes: b"a slowly dripped value ".to_vec(),
            every: DRIP,
            declared: None,
        },
    )
    .header("content-type", "application/octet-stream")
    .header("generation", "1")
}

fn idle_read_1_s() -> RequestPolicy {
    let mut policy = one_attempt();
    policy.timeouts.idle_read = Duration::from_secs(1);
    policy
}

#[tokio::test]
async fn drip_value_under_idle_read_bytes_ends_at_the_call_deadline() {
    let server = HostileServer::always(dripped_value()).await;
    let mut policy = idle_read_1_s();
    policy.retry.deadline = Some(Duration::from_secs(1));
    let client = cloudflare(&server.url(), policy);
    let ns = namespace(&client);
    let result = guarded("bytes() of a dripped value", async {
        let value = ns.get("k").await?.expect("the value exists");
        value.bytes().await
    })
    .await;
    expect_timeout("Value::bytes() of a value dripped under idle_read", &result);
}

#[tokio::test]
async fn drip_value_under_idle_read_item_bytes_ends_at_the_call_deadline() {
    let server = HostileServer::always(dripped_value()).await;
    let mut policy = idle_read_1_s();
    policy.retry.deadline = Some(Duration::from_secs(1));
    let client = fastly(&server.url(), policy);
    let store = client.store(FASTLY_STORE);
    let result = guarded("bytes() of a dripped item", async {
        let item = store.get("k").await?.expect("the item exists");
        item.bytes().await
    })
    .await;
    expect_timeout("Item::bytes() of a value dripped under idle_read", &result);
}

#[tokio::test]
async fn drip_value_stream_with_deadline_ends_in_time() {
    let server = HostileServer::always(dripped_value()).await;
    // The call's deadline stays the default 120 s: only the stream's own bound can end it.
    let client = fastly(&server.url(), idle_read_1_s());
    let store = client.store(FASTLY_STORE);
    let result = guarded("a dripped value stream with a deadline", async {
        let item = store.get("k").await?.expect("the item exists");
        let mut stream = item.into_body().with_deadline(Duration::from_secs(1));
        while stream.try_next().await?.is_some() {}
        Ok::<_, Error>(())
    })
    .await;
    expect_timeout(
        "ValueStream::with_deadline(1 s) on a dripped value",
        &result,
    );
}

// ---------------------------------------------------------------------------------------------
// Misreported answers

/// A 429 asking for a wait longer than the policy allows, whose body the server then cuts:
/// the status and `Retry-After` still reach the retry decision (the call ends at once, with the
/// wait) rather than being lost with the body and retried after a short backoff.
#[tokio::test]
async fn a_429_whose_body_is_cut_keeps_its_retry_after() {
    let cut_429 = Answer::new(
        429,
        Body::Cut {
            declared: 100,
            sent: b"{\"success\":".to_vec(),
        },
    )
    .json_type()
    .header("retry-after", "300");
    let server = HostileServer::always(cut_429).await;
    let cf = cloudflare(&server.url(), fast_policy());
    let error = guarded("cut 429", namespace(&cf).get(KEY))
        .await
        .unwrap_err();
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(300)),
        "{error:?}"
    );
    assert_eq!(
        server.count(),
        1,
        "a wait over max_retry_after is not retried"
    );
    let fst = fastly(&server.url(), fast_policy());
    let error = guarded("cut 429", fst.store(FASTLY_STORE).get(KEY))
        .await
        .unwrap_err();
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(300)),
        "{error:?}"
    );
    assert_eq!(
        server.count(),
        2,
        "a wait over max_retry_after is not retried"
    );
}

#[tokio::test]
async fn close_delimited_value_cut_early_is_not_returned_as_complete() {
    let answer = Answer::new(
        200,
        Body::CloseDelimited(b"the first half of a val".to_vec()),
    )
    .header("content-type", "application/octet-stream")
    .header("generation", "1");
    let server = HostileServer::always(answer).await;
    let mut failures = Vec::new();

    let client = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&client);
    let result = guarded("Cloudflare get", async {
        match ns.get("k").await? {
            Some(value) => value.bytes().await.map(Some),
            None => Ok(None),
        }
    })
    .await;
    if result.is_ok() {
        failures.push(format!(
            "Cloudflare: a value with neither Content-Length nor chunked framing read as {}",
            outcome(&result)
        ));
    }

    let client = fastly(&server.url(), one_attempt());
    let store = client.store(FASTLY_STORE);
    let result = guarded("Fastly get", async {
        match store.get("k").await? {
            Some(item) => item.bytes().await.map(Some),
            None => Ok(None),
        }
    })
    .await;
    if result.is_ok() {
        failures.push(format!(
            "Fastly: a value with neither Content-Length nor chunked framing read as {}",
            outcome(&result)
        ));
    }
    check(&failures);
}

#[tokio::test]
async fn fastly_non_utf8_metadata_is_not_silently_replaced() {
    let answer = Answer::bytes(200, "v")
        .header("content-type", "application/octet-stream")
        .header("generation", "7")
        .header("metadata", b"caf\xe9 \xff\xfe tag");
    let server = HostileServer::always(answer).await;
    let client = fastly(&server.url(), one_attempt());
    let result = guarded("Fastly get", client.store(FASTLY_STORE).get("k")).await;
    match &result {
        Err(Error::BadResponse(_)) => {}
        Ok(Some(item)) if !item.metadata().unwrap_or("").contains('\u{FFFD}') => {}
        Ok(Some(item)) => panic!(
            "non-UTF-8 metadata was silently replaced: {:?}",
            item.metadata()
        ),
        other => panic!(
            "expected a BadResponse or the metadata unchanged, got {}",
            outcome(other)
        ),
    }
}

#[tokio::test]
async fn cloudflare_code_10009_on_a_5xx_is_not_a_missing_key() {
    let server = HostileServer::always(
        Answer::json(500, &cf_failure(10009, "key not found")).header("retry-after", "0"),
    )
    .await;
    let client = cloudflare(&server.url(), fast_policy());
    let ns = namespace(&client);
    let mut failures = Vec::new();
    let result = guarded("get", ns.get("k")).await;
    if !matches!(&result, Err(e) if status(e) == Some(500)) {
        failures.push(format!(
            "get: a 500 carrying code 10009 read as {}",
            match &result {
                Ok(None) => "Ok(None), a missing key".to_string(),
                other => outcome(other),
            }
        ));
    }
    let result = guarded("metadata", ns.metadata("k")).await;
    if !matches!(&result, Err(e) if status(e) == Some(500)) {
        failures.push(format!(
            "metadata: a 500 carrying code 10009 read as {}",
            match &result {
                Ok(None) => "Ok(None), a missing key".to_string(),
                other => outcome(other),
            }
        ));
    }
    check(&failures);
}

/// A 303 to the same origin answering a write, and a success for the GET a client following
/// it would send.
async fn redirecting_server() -> HostileServer {
    HostileServer::start(|request: &Request, _| {
        if request.method == "GET" {
            Answer::json(200, &cf_ok(json!(null)))
                .header("generation", "1")
                .header("x-note", "the GET a followed 303 sends")
        } else {
            Answer::empty(303).header("location", "/somewhere/else")
        }
    })
    .await
}

#[tokio::test]
async fn a_303_answering_a_put_is_not_a_successful_write() {
    let mut failures = Vec::new();
    let methods = |server: &HostileServer| {
        server
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path()))
            .collect::<Vec<_>>()
    };

    let server = redirecting_server().await;
    let client = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&client);
    let options = edgekv::cloudflare::PutOptions::new();
    let result = guarded("Cloudflare put", ns.put("k", "v", options)).await;
    if result.is_ok() {
        failures.push(format!("Cloudflare put: Ok after {:?}", methods(&server)));
    }

    let server = redirecting_server().await;
    let client = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&client);
    let options = edgekv::cloudflare::PutOptions::new().metadata(json!({"m": 1}));
    let result = guarded("Cloudflare put with metadata", ns.put("k", "v", options)).await;
    if result.is_ok() {
        failures.push(format!(
            "Cloudflare put with metadata: Ok after {:?}",
            methods(&server)
        ));
    }

    let server = redirecting_server().await;
    let client = fastly(&server.url(), one_attempt());
    let options = edgekv::fastly::PutOptions::new();
    let result = guarded(
        "Fastly put",
        client.store(FASTLY_STORE).put("k", "v", options),
    )
    .await;
    if result.is_ok() {
        failures.push(format!("Fastly put: Ok after {:?}", methods(&server)));
    }
    check(&failures);
}

/// The answer the keys and namespaces listings misread: a 200 saying `success: false`.
fn key_not_found_200() -> Answer {
    Answer::json(200, &cf_failure(10009, "key not found"))
}

fn expect_10009<T>(failures: &mut Vec<String>, call: &str, result: &Result<T, Error>) {
    match result {
        Err(e @ Error::Api(_)) if e.codes() == [10009] && e.is_not_found() => {}
        other => failures.push(format!(
            "{call}: expected Error::Api with code 10009 and is_not_found(), got {}",
            outcome(other)
        )),
    }
}

#[tokio::test]
async fn cloudflare_success_false_10009_is_an_api_not_found_on_every_json_call() {
    use edgekv::cloudflare::{BulkEntry, BulkGetOptions, BulkOptions, ListKeys, PutOptions};
    let server = HostileServer::always(key_not_found_200()).await;
    let client = cloudflare(&server.url(), fast_policy());
    let ns = namespace(&client);
    let mut failures = Vec::new();
    let f = &mut failures;

    let result = guarded("namespaces", client.namespaces(None).try_next()).await;
    expect_10009(f, "namespaces listing", &result);
    let result = guarded("keys", ns.keys(ListKeys::new()).try_next()).await;
    expect_10009(f, "keys listing", &result);
    let result = guarded("key_pages", ns.key_pages(ListKeys::new()).try_next()).await;
    expect_10009(f, "key_pages listing", &result);
    let result = guarded("get_namespace", client.get_namespace(CF_NAMESPACE)).await;
    expect_10009(f, "get_namespace", &result);
    let result = guarded("create_namespace", client.create_namespace("t")).await;
    expect_10009(f, "create_namespace", &result);
    let result = guarded(
        "rename_namespace",
        client.rename_namespace(CF_NAMESPACE, "t"),
    )
    .await;
    expect_10009(f, "rename_namespace", &result);
    let result = guarded("delete_namespace", client.delete_namespace(CF_NAMESPACE)).await;
    expect_10009(f, "delete_namespace", &result);
    let result = guarded("delete", ns.delete("k")).await;
    expect_10009(f, "delete", &result);
    let result = guarded("put", ns.put("k", "v", PutOptions::new())).await;
    expect_10009(f, "put", &result);
    let options = PutOptions::new().metadata(json!({"m": 1}));
    let result = guarded("put with metadata", ns.put("k", "v", options)).await;
    expect_10009(f, "put with metadata (multipart)", &result);
    let result = guarded(
        "bulk_get",
        ns.bulk_get(["a", "b"], BulkGetOptions::default()),
    )
    .await;
    expect_10009(f, "bulk_get", &result);
    // A missing key's metadata is documented as Ok(None); an Api error is as good.
    let result = guarded("metadata", ns.metadata("k")).await;
    if !matches!(result, Ok(None)) {
        expect_10009(f, "metadata", &result);
    }
    // Bulk writes and deletes report per key: nothing may count as written.
    let entries = vec![BulkEntry::text("a", "1"), BulkEntry::text("b", "2")];
    let result = guarded(
        "bulk_write",
        ns.bulk_write(entries, &BulkOptions::default()),
    )
    .await;
    match &result {
        Ok(report) if report.written == 0 && report.failed.len() == 2 => {}
        Ok(report) => f.push(format!(
            "bulk_write: {} written, {} failed of 2",
            report.written,
            report.failed.len()
        )),
        Err(_) => {}
    }
    let result = guarded(
        "bulk_delete",
        ns.bulk_delete(["a", "b"], &BulkOptions::default()),
    )
    .await;
    match &result {
        Ok(report) if report.written == 0 && report.failed.len() == 2 => {}
        Ok(report) => f.push(format!(
            "bulk_delete: {} deleted, {} failed of 2",
            report.written,
            report.failed.len()
        )),
        Err(_) => {}
    }
    check(&failures);
}

// ---------------------------------------------------------------------------------------------
// Server numbers: listings that lie, waits that overflow

/// Requests a listing may make before the test calls it a loop.
const LOOP_BOUND: usize = 50;

/// Lists namespaces from a server whose page `n` (from 1) has `items(n)` namespaces and
/// `result_info` `info(n)`; past 60 requests it answers an error, so a looping listing ends.
/// Fails if the listing panicked, hung, or made more than [`LOOP_BOUND`] requests.
async fn lying_namespace_listing(
    what: &str,
    info: impl Fn(u64) -> serde_json::Value + Send + Sync + 'static,
    items: impl Fn(u64) -> usize + Send + Sync + 'static,
) {
    let server = HostileServer::start(move |request: &Request, index| {
        if index >= LOOP_BOUND + 10 {
            return Answer::json(400, &cf_failure(99999, "the test server stopped a loop"));
        }
        let page = request
            .query("page")
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1);
        let result: Vec<_> = (0..items(page))
            .map(|i| json!({"id": format!("{CF_NAMESPACE}{page}x{i}"), "title": format!("t{page}-{i}")}))
            .collect();
        let mut body = cf_ok(json!(result));
        body["result_info"] = info(page);
        Answer::json(200, &body)
    })
    .await;
    let client = cloudflare(&server.url(), one_attempt());
    let listing = tokio::spawn(async move {
        let mut namespaces = client.namespaces(None);
        let mut seen = 0usize;
        while let Some(next) = namespaces.next().await {
            match next {
                Ok(_) => seen += 1,
                Err(e) => return (seen, Some(e)),
            }
            if seen > 10_000 {
                break;
            }
        }
        (seen, None)
    });
    let joined = tokio::time::timeout(GUARD, listing).await;
    let requests = server.count();
    match joined {
        Err(_) => panic!("{what}: the listing still runs after {GUARD:?} ({requests} requests)"),
        Ok(Err(join)) if join.is_panic() => {
            panic!("{what}: the listing panicked after {requests} requests: {join}")
        }
        Ok(Err(join)) => panic!("{what}: the listing task failed: {join}"),
        Ok(Ok((seen, error))) => {
            let ended = match &error {
                None => "a clean end".to_string(),
                Some(e) => format!("an error: {e}"),
            };
            assert!(
                requests <= LOOP_BOUND,
                "{what}: the listing made {requests} requests ({seen} namespaces) before \
                 {ended}: it loops"
            );
        }
    }
}

#[tokio::test]
async fn namespace_listing_with_huge_total_count_and_per_page_ends() {
    lying_namespace_listing(
        "total_count u64::MAX, per_page u64::MAX - 1",
        |page| json!({"page": page, "per_page": u64::MAX - 1, "count": 1, "total_count": u64::MAX}),
        |_| 1,
    )
    .await;
}

#[tokio::test]
async fn namespace_listing_with_per_page_0_ends() {
    lying_namespace_listing(
        "per_page 0, total_count 1000",
        |page| json!({"page": page, "per_page": 0, "count": 1, "total_count": 1000}),
        |_| 1,
    )
    .await;
}

#[tokio::test]
async fn namespace_listing_whose_total_pages_never_ends_on_empty_pages_ends() {
    lying_namespace_listing(
        "total_pages u64::MAX, empty pages",
        |page| json!({"page": page, "per_page": 20, "count": 0, "total_count": u64::MAX, "total_pages": u64::MAX}),
        |_| 0,
    )
    .await;
}

#[tokio::test]
async fn namespace_listing_whose_total_count_never_ends_on_empty_pages_ends() {
    lying_namespace_listing(
        "total_count u64::MAX, per_page 20, empty pages",
        |page| json!({"page": page, "per_page": 20, "count": 0, "total_count": u64::MAX}),
        |_| 0,
    )
    .await;
}

/// Runs `call` in a task: a panic or (when `must_end`) a call still waiting after 3 s is a
/// failure; an error or a result is fine.
async fn no_panic<T: Send + 'static>(
    what: String,
    must_end: bool,
    call: impl Future<Output = T> + Send + 'static,
) -> Option<String> {
    let task = tokio::spawn(call);
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(3), task).await {
        Ok(Ok(_)) => None,
        Ok(Err(join)) if join.is_panic() => Some(format!("{what}: panicked: {join}")),
        Ok(Err(join)) => Some(format!("{what}: task failed: {join}")),
        Err(_) => {
            abort.abort();
            must_end.then(|| {
                format!("{what}: still waiting after 3 s, though the wait asked for is past the deadline")
            })
        }
    }
}

#[tokio::test]
async fn huge_retry_after_with_unbounded_policy_values_does_not_panic() {
    let answer = Answer::json(429, &cf_failure(971, "please wait"))
        .header("retry-after", u64::MAX.to_string());
    let server = HostileServer::always(answer).await;
    let unbounded = |deadline: Option<Duration>| {
        let mut policy = fast_policy();
        policy.retry.max_retry_after = Duration::MAX;
        policy.retry.max_delay = Duration::MAX;
        policy.retry.deadline = deadline;
        policy
    };
    let policies = [
        (
            "deadline 120 s",
            unbounded(Some(Duration::from_secs(120))),
            true,
        ),
        ("deadline None", unbounded(None), false),
        (
            "deadline Duration::MAX",
            unbounded(Some(Duration::MAX)),
            false,
        ),
    ];
    let mut checks = Vec::new();
    for (name, policy, must_end) in policies {
        let client = cloudflare(&server.url(), policy.clone());
        let what = format!("Cloudflare get_namespace, max_retry_after MAX, {name}");
        checks.push(futures_util::future::FutureExt::boxed(no_panic(
            what,
            must_end,
            async move { client.get_namespace(CF_NAMESPACE).await.is_ok() },
        )));

        let client = cloudflare(&server.url(), policy.clone());
        let what = format!("Cloudflare bulk_write, max_retry_after MAX, {name}");
        checks.push(futures_util::future::FutureExt::boxed(no_panic(
            what,
            must_end,
            async move {
                let entries = vec![edgekv::cloudflare::BulkEntry::text("a", "1")];
                let options = edgekv::cloudflare::BulkOptions::default();
                let ns = namespace(&client);
                ns.bulk_write(entries, &options)
                    .await
                    .map(|r| r.written)
                    .is_ok()
            },
        )));

        let client = fastly(&server.url(), policy.clone());
        let what = format!("Fastly bulk_write, max_retry_after MAX, {name}");
        checks.push(futures_util::future::FutureExt::boxed(no_panic(
            what,
            must_end,
            async move {
                let entries = vec![edgekv::fastly::BulkEntry::new("a", "1")];
                let options = edgekv::fastly::BulkOptions::default();
                let store = client.store(FASTLY_STORE);
                store
                    .bulk_write(entries, &options)
                    .await
                    .map(|r| r.written)
                    .is_ok()
            },
        )));
    }
    let failures: Vec<String> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect();
    check(&failures);
}

// ---------------------------------------------------------------------------------------------
// Multipart framing: the declared length of a streamed value is checked

fn chunks(total: usize) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let pieces: Vec<Result<Bytes, std::io::Error>> = (0..total.div_ceil(10))
        .map(|i| {
            Ok(Bytes::from(vec![
                b'a' + (i % 26) as u8;
                10.min(total - i * 10)
            ]))
        })
        .collect();
    futures_util::stream::iter(pieces)
}

#[tokio::test]
async fn cloudflare_put_with_metadata_checks_the_declared_length() {
    use edgekv::cloudflare::PutOptions;
    let server = HostileServer::always(Answer::json(200, &cf_ok(json!(null)))).await;
    let client = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&client);
    let options = || PutOptions::new().metadata(json!({"m": "x"}));
    let mut failures = Vec::new();
    let cases: Vec<(&str, edgekv::Body)> = vec![
        (
            "from_stream yielding 30 bytes, declared 10",
            edgekv::Body::from_stream(chunks(30), Some(10)),
        ),
        (
            "from_stream yielding 10 bytes, declared 30",
            edgekv::Body::from_stream(chunks(10), Some(30)),
        ),
        (
            "from_reader yielding 30 bytes, declared 10",
            edgekv::Body::from_reader(std::io::Cursor::new(vec![b'r'; 30]), Some(10)),
        ),
        (
            "from_reader yielding 10 bytes, declared 30",
            edgekv::Body::from_reader(std::io::Cursor::new(vec![b'r'; 10]), Some(30)),
        ),
    ];
    for (what, body) in cases {
        let result = guarded(what, ns.put("k", body, options())).await;
        if result.is_ok() {
            failures.push(format!("put with metadata, {what}: Ok"));
        }
    }
    check(&failures);
}

// ---------------------------------------------------------------------------------------------
// Redaction: no error carries our key, value, metadata or credential

/// Our key: non-ASCII, a space and a `/`, so its percent-encoded form differs from it.
const KEY: &str = "plantedKEY7f3a/ü x";
const VALUE: &str = "plantedVALUE93e1c";
const META: &str = "plantedMETA4b2d";

/// What must never appear, by name.
fn planted() -> Vec<(&'static str, String)> {
    vec![
        // Every spelling of the key a server may echo (a form the server mangled itself, such as
        // `?` for each non-ASCII byte, is not the key and is not looked for).
        ("the key", KEY.to_string()),
        (
            "the key with `+` for its space",
            "plantedKEY7f3a/ü+x".to_string(),
        ),
        (
            "the key percent-encoded",
            "plantedKEY7f3a%2F%C3%BC%20x".to_string(),
        ),
        ("the key's tail percent-encoded", "%C3%BC%20x".to_string()),
        ("the key's tail form-encoded", "%C3%BC+x".to_string()),
        ("the value", VALUE.to_string()),
        ("the metadata", META.to_string()),
        ("the token", TOKEN.to_string()),
    ]
}

/// Everything a request carried, as a hostile server would echo it.
fn echo(request: &Request) -> String {
    format!(
        "you sent {} {} (that is {}), credential {:?} {:?}, body {}",
        request.method,
        request.target,
        request.decoded_target(),
        request.header("authorization"),
        request.header("fastly-key"),
        String::from_utf8_lossy(&request.body)
    )
}

/// The echo as a header value: printable ASCII only.
fn echo_header(request: &Request) -> String {
    echo(request)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Adds the echo to every header the crate might keep.
fn with_echo_headers(answer: Answer, request: &Request) -> Answer {
    let echo = echo_header(request);
    [
        "x-echo",
        "ratelimit-policy",
        "cf-ray",
        "x-request-id",
        "fastly-request-id",
        "location",
    ]
    .iter()
    .fold(answer, |answer, name| answer.header(name, &echo))
}

/// Fails unless `error` is the `expected` variant and none of its texts (`Debug`, `Display`,
/// and both of every `source()` in its chain) holds a planted string.
fn expect_redacted<T>(
    failures: &mut Vec<String>,
    what: &str,
    expected: &str,
    result: &Result<T, Error>,
) {
    let error = match result {
        Ok(_) => return failures.push(format!("{what}: Ok, expected {expected}")),
        Err(error) => error,
    };
    if variant(error) != expected {
        failures.push(format!(
            "{what}: expected {expected}, got {}",
            outcome(result)
        ));
    }
    let mut texts = vec![
        ("Debug".to_string(), format!("{error:?}")),
        ("Display".to_string(), error.to_string()),
    ];
    let mut source = std::error::Error::source(error);
    let mut depth = 0;
    while let Some(cause) = source {
        depth += 1;
        texts.push((format!("source {depth} Debug"), format!("{cause:?}")));
        texts.push((format!("source {depth} Display"), cause.to_string()));
        source = cause.source();
    }
    let mut leaks = Vec::new();
    for (name, secret) in planted() {
        let places: Vec<&str> = texts
            .iter()
            .filter(|(_, text)| text.contains(&secret))
            .map(|(stage, _)| stage.as_str())
            .collect();
        if !places.is_empty() {
            leaks.push(format!("{name} in {places:?}"));
        }
    }
    if !leaks.is_empty() {
        let debug: String = texts[0].1.chars().take(400).collect();
        failures.push(format!(
            "{what} ({}): {}; Debug starts: {debug}",
            variant(error),
            leaks.join(", ")
        ));
    }
}

#[tokio::test]
async fn redaction_invalid_input() {
    use edgekv::cloudflare::PutOptions as CfPut;
    use edgekv::fastly::PutOptions as FastlyPut;
    let server = HostileServer::start(|request: &Request, _| {
        with_echo_headers(Answer::bytes(500, echo(request)), request)
    })
    .await;
    let cf = cloudflare(&server.url(), one_attempt());
    let fst = fastly(&server.url(), one_attempt());
    let store = fst.store(FASTLY_STORE);
    let mut failures = Vec::new();
    let f = &mut failures;

    let literal = cf.namespace(CF_NAMESPACE).with_url_encoding(false);
    let result = literal
        .put(KEY, VALUE, CfPut::new().metadata(json!({ "m": META })))
        .await;
    expect_redacted(
        f,
        "Cloudflare put of a key needing encoding",
        "InvalidInput",
        &result,
    );
    let long_key = KEY.repeat(100);
    let result = namespace(&cf).get(&long_key).await;
    expect_redacted(
        f,
        "Cloudflare get of a key too long",
        "InvalidInput",
        &result,
    );
    let result = namespace(&cf)
        .put(
            KEY,
            VALUE,
            CfPut::new().metadata(json!({ "m": META.repeat(100) })),
        )
        .await;
    expect_redacted(
        f,
        "Cloudflare put with metadata too large",
        "InvalidInput",
        &result,
    );
    let control = format!("{KEY}\u{7}");
    let result = store
        .put(&control, VALUE, FastlyPut::new().metadata(META))
        .await;
    expect_redacted(
        f,
        "Fastly put of a key with a control character",
        "InvalidInput",
        &result,
    );
    let reserved = format!(".well-known/acme-challenge/{KEY}");
    let result = store.get(&reserved).await;
    expect_redacted(f, "Fastly get of a reserved key", "InvalidInput", &result);
    let result = store
        .put(KEY, VALUE, FastlyPut::new().metadata(format!("{META}\n")))
        .await;
    expect_redacted(
        f,
        "Fastly put with metadata not a header value",
        "InvalidInput",
        &result,
    );
    if server.count() != 0 {
        f.push(format!(
            "{} requests were sent for refused input",
            server.count()
        ));
    }
    check(&failures);
}

#[tokio::test]
async fn redaction_transport() {
    use edgekv::cloudflare::{ListKeys, PutOptions as CfPut};
    use edgekv::fastly::PutOptions as FastlyPut;
    let mut failures = Vec::new();
    let f = &mut failures;

    // Connecting fails.
    let refused = hostile::refusing_url().await;
    let cf = cloudflare(&refused, one_attempt());
    let result = guarded("connect", namespace(&cf).get(KEY)).await;
    expect_redacted(
        f,
        "Cloudflare get, connection refused",
        "Transport",
        &result,
    );
    let fst = fastly(&refused, one_attempt());
    let result = guarded(
        "connect",
        fst.store(FASTLY_STORE)
            .put(KEY, VALUE, FastlyPut::new().metadata(META)),
    )
    .await;
    expect_redacted(f, "Fastly put, connection refused", "Transport", &result);

    // The request is read, then the connection closes without an answer.
    let hangup = HostileServer::always(Answer::hangup()).await;
    let cf = cloudflare(&hangup.url(), one_attempt());
    let options = CfPut::new().metadata(json!({ "m": META }));
    let result = guarded("hang-up", namespace(&cf).put(KEY, VALUE, options)).await;
    expect_redacted(
        f,
        "Cloudflare put with metadata, hang-up",
        "Transport",
        &result,
    );
    let result = guarded(
        "hang-up",
        namespace(&cf).keys(ListKeys::new().prefix(KEY)).try_next(),
    )
    .await;
    expect_redacted(
        f,
        "Cloudflare keys with a prefix, hang-up",
        "Transport",
        &result,
    );
    let fst = fastly(&hangup.url(), one_attempt());
    let result = guarded("hang-up", fst.store(FASTLY_STORE).get(KEY)).await;
    expect_redacted(f, "Fastly get, hang-up", "Transport", &result);

    // No answer in time.
    let silent = HostileServer::always(Answer::silence()).await;
    let mut policy = one_attempt();
    policy.timeouts.attempt = Duration::from_secs(1);
    let cf = cloudflare(&silent.url(), policy);
    let result = guarded("silence", namespace(&cf).get(KEY)).await;
    expect_redacted(f, "Cloudflare get, no answer in time", "Transport", &result);

    // The value is cut short while it streams.
    let cut = Answer::new(
        200,
        Body::Cut {
            declared: 1000,
            sent: b"the start".to_vec(),
        },
    )
    .header("content-type", "application/octet-stream")
    .header("generation", "1");
    let server = HostileServer::always(cut).await;
    let fst = fastly(&server.url(), one_attempt());
    let result = guarded("cut value", async {
        let item = fst
            .store(FASTLY_STORE)
            .get(KEY)
            .await?
            .expect("the item exists");
        item.bytes().await
    })
    .await;
    expect_redacted(
        f,
        "Fastly item bytes, value cut short",
        "Transport",
        &result,
    );
    let cf = cloudflare(&server.url(), one_attempt());
    let result = guarded("cut value", async {
        let value = namespace(&cf).get(KEY).await?.expect("the value exists");
        let mut stream = value.into_body();
        while stream.try_next().await?.is_some() {}
        Ok::<_, Error>(())
    })
    .await;
    expect_redacted(
        f,
        "Cloudflare value stream, value cut short",
        "Transport",
        &result,
    );
    check(&failures);
}

#[tokio::test]
async fn redaction_api() {
    use edgekv::cloudflare::{BulkGetOptions, ListKeys, PutOptions as CfPut};
    use edgekv::fastly::PutOptions as FastlyPut;
    let server = HostileServer::start(|request: &Request, _| {
        let echo = echo(request);
        // Cloudflare's failure envelope, its message echoed everywhere, with Fastly's fields.
        let mut body = cf_failure(10001, &echo);
        body["messages"] = json!([{"code": 1, "message": echo}]);
        body["msg"] = json!(echo);
        body["detail"] = json!(echo);
        with_echo_headers(Answer::json(400, &body), request)
    })
    .await;
    let cf = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&cf);
    let store_client = fastly(&server.url(), one_attempt());
    let store = store_client.store(FASTLY_STORE);
    let mut failures = Vec::new();
    let f = &mut failures;

    let result = guarded("get", ns.get(KEY)).await;
    expect_redacted(f, "Cloudflare get", "Api", &result);
    let result = guarded("put", ns.put(KEY, VALUE, CfPut::new())).await;
    expect_redacted(f, "Cloudflare put", "Api", &result);
    let options = CfPut::new().metadata(json!({ "m": META }));
    let result = guarded("put with metadata", ns.put(KEY, VALUE, options)).await;
    expect_redacted(f, "Cloudflare put with metadata", "Api", &result);
    let result = guarded("metadata", ns.metadata(KEY)).await;
    expect_redacted(f, "Cloudflare metadata", "Api", &result);
    let result = guarded("keys", ns.keys(ListKeys::new().prefix(KEY)).try_next()).await;
    expect_redacted(f, "Cloudflare keys with a prefix", "Api", &result);
    let result = guarded("bulk_get", ns.bulk_get([KEY], BulkGetOptions::default())).await;
    expect_redacted(f, "Cloudflare bulk_get", "Api", &result);
    let result = guarded("get", store.get(KEY)).await;
    expect_redacted(f, "Fastly get", "Api", &result);
    let options = FastlyPut::new().metadata(META);
    let result = guarded("put", store.put(KEY, VALUE, options)).await;
    expect_redacted(f, "Fastly put", "Api", &result);
    let result = guarded(
        "delete",
        store.delete(KEY, edgekv::fastly::DeleteOptions::new()),
    )
    .await;
    expect_redacted(f, "Fastly delete", "Api", &result);
    check(&failures);
}

#[tokio::test]
async fn redaction_bad_response() {
    use edgekv::cloudflare::{ListKeys, PutOptions as CfPut};
    let mut failures = Vec::new();
    let f = &mut failures;

    // JSON that does not decode, quoting the request where serde quotes what it found.
    let server = HostileServer::start(|request: &Request, _| {
        let echo = echo(request);
        let body = if request.path().ends_with("/keys") {
            // A string where a list belongs: serde's error quotes the string.
            let mut body = cf_ok(json!(echo));
            body["data"] = json!(echo);
            body.to_string()
        } else {
            format!(r#"{{"success":true,"errors":[],"messages":[],"result":{echo}"#)
        };
        with_echo_headers(Answer::bytes(200, body).json_type(), request)
    })
    .await;
    let cf = cloudflare(&server.url(), one_attempt());
    let ns = namespace(&cf);
    let result = guarded("metadata", ns.metadata(KEY)).await;
    expect_redacted(f, "Cloudflare metadata, JSON cut", "BadResponse", &result);
    let options = CfPut::new().metadata(json!({ "m": META }));
    let result = guarded("put with metadata", ns.put(KEY, VALUE, options)).await;
    expect_redacted(
        f,
        "Cloudflare put with metadata, JSON cut",
        "BadResponse",
        &result,
    );
    let result = guarded("keys", ns.keys(ListKeys::new().prefix(KEY)).try_next()).await;
    expect_redacted(
        f,
        "Cloudflare keys, a string for the list",
        "BadResponse",
        &result,
    );
    let fst = fastly(&server.url(), one_attempt());
    let listing = edgekv::fastly::ListKeys::new().prefix(KEY);
    let result = guarded("keys", fst.store(FASTLY_STORE).keys(listing).try_next()).await;
    expect_redacted(
        f,
        "Fastly keys, a string for the list",
        "BadResponse",
        &result,
    );

    // Headers that do not parse, holding the echo.
    let server = HostileServer::start(|request: &Request, _| {
        let echo = echo_header(request);
        Answer::bytes(200, "value")
            .header("content-type", "application/octet-stream")
            .header("expiration", &echo)
            .header("generation", &echo)
    })
    .await;
    let cf = cloudflare(&server.url(), one_attempt());
    let result = guarded("get", namespace(&cf).get(KEY)).await;
    expect_redacted(
        f,
        "Cloudflare get, expiration header",
        "BadResponse",
        &result,
    );
    let fst = fastly(&server.url(), one_attempt());
    let result = guarded("get", fst.store(FASTLY_STORE).get(KEY)).await;
    expect_redacted(f, "Fastly get, generation header", "BadResponse", &result);
    check(&failures);
}
