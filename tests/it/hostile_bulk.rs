//! Bulk accounting against answers that lie, contradict themselves or never come: a scripted
//! loopback server answers each Fastly batch chunk and Cloudflare bulk write with a seeded mix of
//! per-line errors (by index, by key, out of range, naming no line, contradicting themselves),
//! whole-batch 4xx and 5xx, unreadable 2xx bodies and hang-ups, and records what it refused. The
//! test counts what it submitted itself; the server's record is the oracle: every key is reported
//! exactly once, and reported written exactly when the last answer that concerned it accepted it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgekv::emulator::faults::{Reply, Seen};
use edgekv::policy::{RequestPolicy, RetryPolicy};
use edgekv::{cloudflare, fastly};
use serde_json::{Value, json};

use crate::support::backend::emulator_fastly;
use crate::support::envelope::{cf_failure, cf_ok};
use crate::support::scripted::Scripted;
use crate::support::{
    CF_NAMESPACE, FASTLY_STORE, FASTLY_TOKEN, cloudflare_at, cloudflare_token, fast_policy,
    fastly_at,
};

/// Entries submitted per seed and provider.
const ENTRIES: usize = 3_000;
/// Seeds of the runs; the odd ones allow retries, so the record must follow resends.
const SEEDS: [u64; 4] = [11, 12, 13, 14];

/// What the server answered one request, and which of the request's keys that answer refused.
struct Outcome {
    kind: &'static str,
    reply: Reply,
    refused: Vec<bool>,
}

impl Outcome {
    fn all(kind: &'static str, reply: Reply, n: usize) -> Self {
        Outcome {
            kind,
            reply,
            refused: vec![true; n],
        }
    }

    fn none(kind: &'static str, reply: Reply, n: usize) -> Self {
        Outcome {
            kind,
            reply,
            refused: vec![false; n],
        }
    }
}

/// What the server saw and refused.
#[derive(Debug, Default)]
struct Record {
    /// Each key's fate in the last answer to a request that carried it: refused or not.
    refused: HashMap<String, bool>,
    /// Requests seen per first key, so that a resend of the same chunk gets a fresh answer.
    attempts: HashMap<String, u64>,
    /// How often each kind of answer was played.
    kinds: BTreeMap<&'static str, usize>,
    /// Requests that were not the bulk call under test.
    strays: Vec<String>,
}

impl Scripted {
    /// A server for the bulk write under test, answering each request with `answer(rng, keys)`
    /// and recording it in `record` before the answer is played (so the record is complete once
    /// the client has its answer or its hang-up). The generator is seeded by the run's seed, the
    /// request's first key and how often that key came first: a run gets the same answers
    /// whatever order its chunks arrive in, and a resend gets a fresh one.
    async fn bulk(
        seed: u64,
        (method, path_end): (&'static str, &'static str),
        keys_of: fn(&[u8]) -> Vec<String>,
        answer: fn(&mut fastrand::Rng, &[String]) -> Outcome,
        record: Arc<Mutex<Record>>,
    ) -> Self {
        Self::start(Arc::new(move |request: &Seen| {
            let mut record = record.lock().unwrap();
            if request.method != method || !request.target.ends_with(path_end) {
                let stray = format!("{} {}", request.method, request.target);
                record.strays.push(stray);
                return Reply::status(500);
            }
            let keys = keys_of(&request.body);
            let first = keys.first().cloned().unwrap_or_default();
            let attempt = record.attempts.entry(first.clone()).or_default();
            *attempt += 1;
            let mut hasher = std::hash::DefaultHasher::new();
            (seed, &first, *attempt).hash(&mut hasher);
            let mut rng = fastrand::Rng::with_seed(hasher.finish());
            let outcome = answer(&mut rng, &keys);
            assert_eq!(outcome.refused.len(), keys.len(), "{}", outcome.kind);
            *record.kinds.entry(outcome.kind).or_default() += 1;
            for (key, refused) in keys.into_iter().zip(outcome.refused) {
                record.refused.insert(key, refused);
            }
            outcome.reply
        }))
        .await
    }
}

/// A non-empty random subset of `0..n`, about one line in five.
fn some_lines(rng: &mut fastrand::Rng, n: usize) -> Vec<usize> {
    let mut lines: Vec<usize> = (0..n).filter(|_| rng.u8(0..5) == 0).collect();
    if lines.is_empty() {
        lines.push(rng.usize(0..n));
    }
    lines
}

fn refused_lines(n: usize, lines: &[usize]) -> Vec<bool> {
    let mut refused = vec![false; n];
    for line in lines {
        refused[*line] = true;
    }
    refused
}

fn fastly_keys(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let line: Value = serde_json::from_slice(l).unwrap();
            line["key"].as_str().unwrap().to_string()
        })
        .collect()
}

/// One Fastly per-line error about line `i`, in one of the shapes a line can be named by.
fn fastly_line_error(rng: &mut fastrand::Rng, keys: &[String], i: usize) -> Value {
    match rng.u8(0..3) {
        0 => json!({"index": i, "code": "400", "reason": "bad line"}),
        1 => json!({"key": keys[i], "code": 413, "message": "too large"}),
        _ => json!({"index": i.to_string(), "key": keys[i], "detail": "rejected"}),
    }
}

fn fastly_answer(rng: &mut fastrand::Rng, keys: &[String]) -> Outcome {
    let n = keys.len();
    let partial =
        |errors: Vec<Value>| json!({"type": "batch-errors", "title": "partial", "errors": errors});
    let line_errors = |rng: &mut fastrand::Rng, lines: &[usize]| -> Vec<Value> {
        lines
            .iter()
            .map(|i| fastly_line_error(rng, keys, *i))
            .collect()
    };
    match rng.u8(0..20) {
        0..=5 => Outcome::none(
            "success",
            Reply::json(200, json!({"type": "", "title": "success", "errors": []})),
            n,
        ),
        6..=9 => {
            let lines = some_lines(rng, n);
            let errors = line_errors(rng, &lines);
            Outcome {
                kind: "2xx naming lines",
                reply: Reply::json(200, partial(errors)),
                refused: refused_lines(n, &lines),
            }
        }
        10 => {
            let lines = some_lines(rng, n);
            let errors = line_errors(rng, &lines);
            Outcome::all("400 naming lines", Reply::json(400, partial(errors)), n)
        }
        11 => {
            let lines = some_lines(rng, n);
            let mut errors = line_errors(rng, &lines);
            let out = n + rng.usize(0..3);
            let stray = match rng.bool() {
                true => json!({"index": out, "code": "400", "reason": "line out of range"}),
                false => json!({"index": out, "key": keys[0], "reason": "line out of range"}),
            };
            errors.insert(rng.usize(0..=errors.len()), stray);
            Outcome::all("index out of range", Reply::json(200, partial(errors)), n)
        }
        12 => {
            let error = json!({"key": "a key never sent", "code": "400", "reason": "unknown"});
            Outcome::all("key never sent", Reply::json(200, partial(vec![error])), n)
        }
        13 => {
            let error = json!({"code": "503", "reason": "shard unavailable"});
            Outcome::all("names no line", Reply::json(200, partial(vec![error])), n)
        }
        14 => {
            let i = rng.usize(0..n);
            let other = match n {
                1 => "another key".to_string(),
                _ => keys[(i + 1 + rng.usize(0..n - 1)) % n].clone(),
            };
            let error = json!({"index": i, "key": other, "reason": "which one?"});
            Outcome::all(
                "contradicts itself",
                Reply::json(200, partial(vec![error])),
                n,
            )
        }
        15 => {
            let reply = match rng.u8(0..4) {
                0 => Reply::json(400, partial(Vec::new())),
                1 => Reply::status(401),
                2 => Reply::json(404, json!({"title": "store not found"})),
                _ => Reply::body(413, "text/html", "<html>too large</html>"),
            };
            Outcome::all("4xx", reply, n)
        }
        16 => {
            let status = [500, 501, 502, 503, 504][rng.usize(0..5)];
            Outcome::all("5xx", Reply::json(status, partial(Vec::new())), n)
        }
        17 => Outcome::all("hang-up", Reply::Reset, n),
        18 => {
            let body = json!({"type": "", "title": "success", "errors": []}).to_string();
            let cut = Reply::CutBody {
                declared: body.len(),
                sent: body.as_bytes()[..body.len() / 2].to_vec(),
            };
            Outcome::all("cut answer", cut, n)
        }
        _ => {
            let reply = match rng.bool() {
                true => Reply::body(200, "text/html", "<html>OK</html>"),
                false => Reply::json(200, json!({"errors": "some lines failed"})),
            };
            Outcome::all("unreadable 2xx", reply, n)
        }
    }
}

fn cloudflare_keys(body: &[u8]) -> Vec<String> {
    let items: Vec<Value> = serde_json::from_slice(body).unwrap();
    items
        .iter()
        .map(|item| item["key"].as_str().unwrap().to_string())
        .collect()
}

fn cloudflare_answer(rng: &mut fastrand::Rng, keys: &[String]) -> Outcome {
    let n = keys.len();
    let result = |count: usize, unsuccessful: Vec<String>| {
        cf_ok(json!({"successful_key_count": count, "unsuccessful_keys": unsuccessful}))
    };
    match rng.u8(0..20) {
        0..=5 => Outcome::none("success", Reply::json(200, result(n, Vec::new())), n),
        6 => Outcome::none(
            "success without a result",
            Reply::json(200, cf_ok(Value::Null)),
            n,
        ),
        7..=10 => {
            let lines = some_lines(rng, n);
            let listed = lines.iter().map(|i| keys[*i].clone()).collect();
            Outcome {
                kind: "unsuccessful keys",
                reply: Reply::json(200, result(n - lines.len(), listed)),
                refused: refused_lines(n, &lines),
            }
        }
        11 => {
            let lines = some_lines(rng, n);
            let mut listed: Vec<String> = lines.iter().map(|i| keys[*i].clone()).collect();
            listed.insert(rng.usize(0..=listed.len()), "a key never sent".into());
            let reply = Reply::json(200, result(n - lines.len(), listed));
            Outcome::all("unsuccessful key never sent", reply, n)
        }
        12 => {
            let reply = Reply::json(200, result(rng.usize(0..n), Vec::new()));
            Outcome::all("count too low", reply, n)
        }
        13 => Outcome::all(
            "200 without success",
            Reply::json(200, cf_failure(10001, "could not write")),
            n,
        ),
        14 => {
            let status = [400, 403, 404, 413][rng.usize(0..4)];
            Outcome::all("4xx", Reply::json(status, cf_failure(10013, "refused")), n)
        }
        15 => {
            let reply = match rng.bool() {
                true => Reply::json(503, cf_failure(10000, "unavailable")),
                false => Reply::body(502, "text/html", "<html>bad gateway</html>"),
            };
            Outcome::all("5xx", reply, n)
        }
        16 => Outcome::all("hang-up", Reply::Reset, n),
        17 => {
            let body = result(n, Vec::new()).to_string();
            let cut = Reply::CutBody {
                declared: body.len(),
                sent: body.as_bytes()[..body.len() / 2].to_vec(),
            };
            Outcome::all("cut answer", cut, n)
        }
        _ => Outcome::all(
            "unreadable 2xx",
            Reply::body(200, "text/html", "<html>OK</html>"),
            n,
        ),
    }
}

/// The keys of a run: unique, some with characters JSON must escape or that are not ASCII, and
/// about one in a hundred refused before sending (`invalid`).
fn keys(rng: &mut fastrand::Rng, seed: u64, invalid: &str) -> Vec<(String, bool)> {
    (0..ENTRIES)
        .map(|i| match rng.u8(0..100) {
            0 => (invalid.to_string(), true),
            1..=10 => (format!("s{seed}/ключ \"{i}\" \\ %2e"), false),
            _ => (format!("s{seed}/k{i}"), false),
        })
        .collect()
}

/// Retries off, or fast retries: the record follows resends either way.
fn policy(seed: u64) -> RequestPolicy {
    let mut policy = RequestPolicy::default();
    policy.retry = if seed.is_multiple_of(2) {
        RetryPolicy::disabled()
    } else {
        let mut retry = RetryPolicy::default();
        retry.base_delay = Duration::from_millis(1);
        retry.max_delay = Duration::from_millis(5);
        retry
    };
    policy
}

/// Checks `report` against what was submitted and the server's record.
fn check(
    provider: &str,
    seed: u64,
    submitted: &[(String, bool)],
    report: &fastly::BulkReport,
    record: &Record,
) {
    let context = format!("{provider}, seed {seed}");
    assert!(record.strays.is_empty(), "{context}: {:?}", record.strays);
    assert_eq!(report.submitted(), submitted.len() as u64, "{context}");
    let mut failed = vec![false; submitted.len()];
    for f in &report.failed {
        let index = usize::try_from(f.index).unwrap();
        assert!(!failed[index], "{context}: #{index} reported twice");
        failed[index] = true;
        assert_eq!(f.key, submitted[index].0, "{context}: #{index}");
        assert!(!f.reason.is_empty(), "{context}: #{index}");
    }
    let (mut lies, mut needless) = (Vec::new(), Vec::new());
    for (index, (key, invalid)) in submitted.iter().enumerate() {
        let refused = match record.refused.get(key) {
            Some(refused) => *refused,
            None => {
                assert!(invalid, "{context}: #{index} never reached the server");
                true
            }
        };
        if refused && !failed[index] {
            lies.push(index);
        }
        if !refused && failed[index] {
            needless.push(index);
        }
    }
    assert!(
        lies.is_empty(),
        "{context}: {} refused lines reported written, first {:?}",
        lies.len(),
        &lies[..lies.len().min(10)]
    );
    assert!(
        needless.is_empty(),
        "{context}: {} accepted lines reported failed, first {:?}",
        needless.len(),
        &needless[..needless.len().min(10)]
    );
    let accepted = record.refused.values().filter(|r| !**r).count();
    assert_eq!(report.written, accepted as u64, "{context}");
}

/// Every kind of answer was played at least once over the seeds: the mix is not left to luck.
fn check_mix(provider: &str, kinds: &BTreeMap<&'static str, usize>, expected: usize) {
    assert_eq!(kinds.len(), expected, "{provider}: {kinds:?}");
}

#[tokio::test]
async fn a_fastly_batch_reports_no_refused_line_written_whatever_the_answers() {
    let mut kinds = BTreeMap::new();
    for seed in SEEDS {
        let record = Arc::new(Mutex::new(Record::default()));
        let expected = ("PUT", "/batch");
        let server =
            Scripted::bulk(seed, expected, fastly_keys, fastly_answer, record.clone()).await;
        let client = fastly_at(&server.url, FASTLY_TOKEN, policy(seed));
        let mut rng = fastrand::Rng::with_seed(seed);
        let submitted = keys(&mut rng, seed, "..");
        let entries: Vec<fastly::BulkEntry> = submitted
            .iter()
            .map(|(key, _)| {
                let value: Vec<u8> = (0..rng.usize(0..120)).map(|_| rng.u8(..)).collect();
                fastly::BulkEntry::new(key.clone(), value)
            })
            .collect();
        let mut options = fastly::BulkOptions::default();
        // About 5 to 20 lines a request: hundreds of chunks a run.
        options.max_request_bytes = 1024 + rng.usize(0..1024);
        let report = client
            .store(FASTLY_STORE)
            .bulk_write(entries, &options)
            .await
            .unwrap();
        let record = record.lock().unwrap();
        check("fastly", seed, &submitted, &report, &record);
        assert!(record.attempts.len() > 100, "{}", record.attempts.len());
        for (kind, n) in &record.kinds {
            *kinds.entry(*kind).or_insert(0) += n;
        }
    }
    check_mix("fastly", &kinds, 12);
}

#[tokio::test]
async fn a_cloudflare_bulk_write_reports_no_refused_key_written_whatever_the_answers() {
    let mut kinds = BTreeMap::new();
    for seed in SEEDS {
        let record = Arc::new(Mutex::new(Record::default()));
        let (expected, answer) = (("PUT", "/bulk"), cloudflare_answer);
        let server = Scripted::bulk(seed, expected, cloudflare_keys, answer, record.clone()).await;
        let client = cloudflare_at(&server.url, cloudflare_token(), policy(seed));
        let mut rng = fastrand::Rng::with_seed(seed);
        let submitted = keys(&mut rng, seed, "");
        let entries: Vec<cloudflare::BulkEntry> = submitted
            .iter()
            .map(|(key, _)| {
                let value: Vec<u8> = (0..rng.usize(0..120)).map(|_| rng.u8(..)).collect();
                cloudflare::BulkEntry::bytes(key.clone(), value)
            })
            .collect();
        let mut options = cloudflare::BulkOptions::default();
        options.max_request_bytes = 1024 + rng.usize(0..1024);
        options.min_key_interval = Duration::from_millis(1);
        let report = client
            .namespace(CF_NAMESPACE)
            .bulk_write(entries, &options)
            .await
            .unwrap();
        let record = record.lock().unwrap();
        check("cloudflare", seed, &submitted, &report, &record);
        assert!(record.attempts.len() > 100, "{}", record.attempts.len());
        for (kind, n) in &record.kinds {
            *kinds.entry(*kind).or_insert(0) += n;
        }
    }
    check_mix("cloudflare", &kinds, 11);
}

#[tokio::test]
async fn bulk_get_returns_only_the_keys_asked_for() {
    let server = Scripted::start(Arc::new(|_: &Seen| {
        let values = json!({"values": {"a": "1", "b": null, "intruder": "planted", "": "empty"}});
        Reply::json(200, cf_ok(values))
    }))
    .await;
    let namespace =
        cloudflare_at(&server.url, cloudflare_token(), fast_policy()).namespace(CF_NAMESPACE);
    for with_metadata in [false, true] {
        let options = cloudflare::BulkGetOptions {
            json: false,
            with_metadata,
        };
        let got = namespace.bulk_get(["a", "b"], options).await.unwrap();
        let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["a", "b"], "with_metadata: {with_metadata}");
        assert_eq!(got["b"], None);
    }
}

/// A bulk get server whose values are 1,000 bytes (`huge`: 5,000), recording each request's
/// number of keys.
async fn sized_values(sizes: Arc<Mutex<Vec<usize>>>) -> Scripted {
    Scripted::start(Arc::new(move |request: &Seen| {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let keys: Vec<&str> = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        sizes.lock().unwrap().push(keys.len());
        let values: serde_json::Map<String, Value> = keys
            .iter()
            .map(|k| {
                let len = if *k == "huge" { 5_000 } else { 1_000 };
                (k.to_string(), json!(k.repeat(len / k.len())))
            })
            .collect();
        Reply::json(200, cf_ok(json!({"values": values})))
    }))
    .await
}

#[tokio::test]
async fn a_bulk_get_answer_over_the_read_limit_is_split_down_to_single_keys() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let server = sized_values(sizes.clone()).await;
    let mut policy = fast_policy();
    // Two 1,000-byte values and their envelope fit; three do not.
    policy.read_limits.bulk_get = 2_600;
    let namespace = cloudflare_at(&server.url, cloudflare_token(), policy).namespace(CF_NAMESPACE);
    let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
    let got = namespace
        .bulk_get(keys.clone(), cloudflare::BulkGetOptions::default())
        .await
        .unwrap();
    assert_eq!(got.len(), 10);
    for key in &keys {
        let value = got[key].as_ref().unwrap().value.as_str().unwrap();
        assert_eq!(value, key.repeat(1_000 / key.len()));
    }
    // Halves, depth first: 10 → 5 → 2 (read) and 3 → 1, 2 (read); then the other 5 alike.
    assert_eq!(*sizes.lock().unwrap(), [10, 5, 2, 3, 1, 2, 5, 2, 3, 1, 2]);

    sizes.lock().unwrap().clear();
    let error = namespace
        .bulk_get(["k0", "huge"], cloudflare::BulkGetOptions::default())
        .await
        .unwrap_err();
    assert!(error.is_answer_too_large(), "{error:?}");
    assert_eq!(
        *sizes.lock().unwrap(),
        [2, 1, 1],
        "a single key too large fails"
    );
}

#[tokio::test]
async fn the_emulator_refuses_a_generation_precondition_that_is_no_generation() {
    use edgekv::emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig};
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = emulator_fastly(&emulator.fastly_url(), fast_policy());
    let store = client.create_store("s", None).await.unwrap().id;
    client
        .store(&store)
        .put("exists", "v", fastly::PutOptions::new())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for key in ["missing", "exists"] {
        for precondition in ["garbage", "-5", ""] {
            let url = format!(
                "{}/resources/stores/kv/{store}/keys/{key}",
                emulator.fastly_url()
            );
            let answer = http
                .put(url)
                .header("fastly-key", DEFAULT_TOKEN)
                .header("if-generation-match", precondition)
                .body("written?")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 400, "{key}, {precondition:?}");
        }
    }
    let missing = client.store(&store).get("missing").await.unwrap();
    assert!(missing.is_none(), "a refused precondition wrote the key");
    let exists = client.store(&store).get("exists").await.unwrap().unwrap();
    assert_eq!(exists.bytes().await.unwrap(), "v");
}
