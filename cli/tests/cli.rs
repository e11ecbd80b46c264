//! The built `edgekv` binary against an emulator this test starts: files in and out of both
//! providers, resumed jobs, exit codes, and what it draws on a terminal (a pseudo-terminal)
//! and writes to pipes.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgekv::emulator::{Api, Emulator, EmulatorConfig, Faults};
use serde_json::{Value, json};

/// An emulator, a state directory for the journals, and the command aimed at both.
struct Setup {
    emulator: Emulator,
    state: PathBuf,
}

impl Setup {
    async fn new(faults: Faults) -> Setup {
        let emulator = Emulator::start(EmulatorConfig::default().faults(faults))
            .await
            .unwrap();
        let state = std::env::temp_dir().join(format!(
            "edgekv-cli-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&state).unwrap();
        Setup { emulator, state }
    }

    /// `edgekv ARGS` aimed at the emulator, with no credential of the environment's.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgekv"));
        command
            .args(args)
            .env("EDGEKV_EMULATOR", self.emulator.fastly_url())
            .env("EDGEKV_STATE_DIR", &self.state)
            .env("TERM", "xterm-256color");
        for name in [
            "CLOUDFLARE_API_TOKEN",
            "CLOUDFLARE_API_KEY",
            "CLOUDFLARE_EMAIL",
            "CLOUDFLARE_ACCOUNT_ID",
            "CLOUDFLARE_BASE_URL",
            "FASTLY_API_TOKEN",
            "FASTLY_API_URL",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Runs `edgekv ARGS` to its end, stdin empty.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs `edgekv ARGS`, which must succeed: its stdout, as text.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "edgekv {args:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A new namespace (`cf:…`) and store (`fastly:…`), made through the command.
    fn stores(&self) -> (String, String) {
        let namespace = self
            .ok(&["stores", "create", "cf", "cli"])
            .trim()
            .to_string();
        let store = self
            .ok(&["stores", "create", "fastly", "cli"])
            .trim()
            .to_string();
        assert!(namespace.starts_with("cf:") && store.starts_with("fastly:"));
        (namespace, store)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// The requests the emulator answered with a success, for `api`, whose path ends with
    /// `suffix`.
    fn served(&self, api: Api, suffix: &str) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.api == api && r.path.ends_with(suffix))
            .filter(|r| (200..300).contains(&r.status))
            .count()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn id(address: &str) -> &str {
    address.split_once(':').unwrap().1
}

/// Entries of Cloudflare's bulk JSON with binary values, JSON metadata and expiry.
fn wrangler_entries(now: i64) -> Vec<Value> {
    let binary = base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150, 255]);
    vec![
        json!({"key": "text", "value": "plain text"}),
        json!({"key": "binary", "value": binary, "base64": true}),
        json!({"key": "meta", "value": "m", "metadata": {"owner": "ops", "n": [1, 2]}}),
        json!({"key": "expiring", "value": "e", "expiration": now + 3_600}),
        json!({"key": "dir/nested key", "value": "n"}),
    ]
}

fn unix_now() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64
}

/// Lines of an export to Fastly's format, by key.
fn ndjson_by_key(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|entry| (entry["key"].as_str().unwrap().to_string(), entry))
        .collect()
}

/// Import a wrangler file into a namespace, copy it to a Fastly store, export that to Fastly's
/// lines: every value (binary ones byte for byte) and metadata arrive; expiry, which Fastly's
/// reads do not give, is checked through an export of the namespace (absolute, ±2 s). A sync
/// dry run changes nothing. The exported files carry exactly the documented fields.
#[tokio::test(flavor = "multi_thread")]
async fn files_cross_both_providers_and_come_back_equal() {
    let setup = Setup::new(Faults::default()).await;
    let (namespace, store) = setup.stores();
    let now = unix_now();
    let entries = wrangler_entries(now);
    let input = setup.path("in.json");
    std::fs::write(&input, serde_json::to_vec(&entries).unwrap()).unwrap();

    let imported = setup.ok(&["import", input.to_str().unwrap(), &namespace, "--json"]);
    let imported: Value = serde_json::from_str(&imported).unwrap();
    assert_eq!(
        (
            imported["copied"].as_u64(),
            imported["failed"].as_array().map(Vec::len)
        ),
        (Some(5), Some(0))
    );
    setup.ok(&["copy", &namespace, &store]);
    let lines = setup.path("out.ndjson");
    setup.ok(&["export", &store, lines.to_str().unwrap()]);
    let exported = ndjson_by_key(&std::fs::read_to_string(&lines).unwrap());
    assert_eq!(exported.len(), entries.len());
    for entry in &entries {
        let key = entry["key"].as_str().unwrap();
        let out = &exported[key];
        let value = base64::engine::general_purpose::STANDARD
            .decode(out["value"].as_str().unwrap())
            .unwrap();
        let expected = match entry["base64"].as_bool() {
            Some(true) => base64::engine::general_purpose::STANDARD
                .decode(entry["value"].as_str().unwrap())
                .unwrap(),
            _ => entry["value"].as_str().unwrap().as_bytes().to_vec(),
        };
        assert_eq!(value, expected, "{key}");
        // Cloudflare's JSON metadata is Fastly's text: the same JSON.
        match entry.get("metadata") {
            Some(metadata) => {
                let text = out["metadata"].as_str().unwrap();
                assert_eq!(serde_json::from_str::<Value>(text).unwrap(), *metadata);
            }
            None => assert!(out.get("metadata").is_none(), "{key}: {out}"),
        }
        let fields: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            fields
                .iter()
                .all(|f| ["key", "value", "metadata", "time_to_live_sec"].contains(f)),
            "{fields:?}"
        );
    }
    // Expiry, through Cloudflare's own format: an absolute time, as imported.
    let json_out = setup.path("out.json");
    setup.ok(&["export", &namespace, json_out.to_str().unwrap()]);
    let back: Vec<Value> = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let back: BTreeMap<&str, &Value> = back
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e))
        .collect();
    let expiration = back["expiring"]["expiration"].as_i64().unwrap();
    assert!((expiration - (now + 3_600)).abs() <= 2, "{expiration}");
    assert_eq!(back["binary"]["base64"], json!(true));
    assert_eq!(back["binary"]["value"], entries[1]["value"]);
    for entry in back.values() {
        let documented = [
            "key",
            "value",
            "expiration",
            "expiration_ttl",
            "metadata",
            "base64",
        ];
        assert!(
            entry
                .as_object()
                .unwrap()
                .keys()
                .all(|f| documented.contains(&f.as_str())),
            "{entry}"
        );
    }

    // Fastly's reads give no expiry, so the store's export cannot carry it (the documented
    // API sets a time to live and never returns one): its line has none. The entry still
    // expires when the namespace said, on the emulator's clock moved on.
    assert!(exported["expiring"].get("time_to_live_sec").is_none());
    let lines_from_cf = setup.path("cf.ndjson");
    setup.ok(&["export", &namespace, lines_from_cf.to_str().unwrap()]);
    let from_cf = ndjson_by_key(&std::fs::read_to_string(&lines_from_cf).unwrap());
    let ttl = from_cf["expiring"]["time_to_live_sec"].as_i64().unwrap();
    assert!((ttl - 3_600).abs() <= 2, "{ttl}");

    // A key only the store has: a sync dry run names it and changes nothing: no write request.
    setup.ok(&["put", &store, "extra", "x"]);
    setup.emulator.clear_requests();
    let plan = setup.ok(&[
        "sync",
        &namespace,
        &store,
        "--delete",
        "--dry-run",
        "--json",
    ]);
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(
        (plan["to_copy"].as_u64(), plan["to_delete"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(plan["to_delete_keys"], json!(["extra"]));
    // Every request but reads (Cloudflare's bulk read is a POST).
    let writes = setup
        .emulator
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/bulk/get"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect::<Vec<_>>();
    assert!(writes.is_empty(), "a dry run sends no write: {writes:?}");
    assert_eq!(
        setup.ok(&["get", &store, "extra"]),
        "x",
        "a dry run deletes nothing"
    );
    let listed = setup.ok(&["list", &store]);
    assert_eq!(listed.lines().count(), 6);
    // And the sync itself makes them equal.
    setup.ok(&[
        "sync",
        &namespace,
        &store,
        "--delete",
        "--max-delete-percent",
        "50",
    ]);
    // The expiry crossed to Fastly: there until 2 s before the time imported, gone 2 s after.
    let to = |at: i64| Duration::from_secs((at - setup.emulator.now()).max(0) as u64);
    setup.emulator.advance(to(now + 3_600 - 2));
    assert_eq!(setup.ok(&["get", &store, "expiring"]), "e");
    setup.emulator.advance(to(now + 3_600 + 2));
    assert_eq!(
        setup.run(&["get", &store, "expiring"]).status.code(),
        Some(1)
    );
    setup.ok(&["verify", &namespace, &store]);
}

/// What `list --json` prints is what `delete --keys-from` reads: piped, exactly the keys listed
/// go.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_piped_into_delete_removes_exactly_those_keys() {
    let setup = Setup::new(Faults::default()).await;
    let (namespace, _) = setup.stores();
    let keys = (0..30).map(|i| (format!("tmp/{i:02}"), b"v".to_vec()));
    let kept = (0..5).map(|i| (format!("keep/{i}"), b"v".to_vec()));
    setup
        .emulator
        .seed_cloudflare(id(&namespace), keys.chain(kept))
        .unwrap();
    let listed = setup.ok(&["list", &namespace, "--prefix", "tmp/", "--json"]);
    let names: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(names.len(), 30);

    let mut delete = setup
        .command(&["delete", &namespace, "--keys-from", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    delete
        .stdin
        .take()
        .unwrap()
        .write_all(listed.as_bytes())
        .unwrap();
    let output = delete.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let left = setup.ok(&["list", &namespace]);
    let left: Vec<&str> = left.lines().collect();
    assert_eq!(left, ["keep/0", "keep/1", "keep/2", "keep/3", "keep/4"]);
    // A listing of nothing deletes nothing, and that is done.
    let nothing = setup.path("nothing.json");
    std::fs::write(&nothing, "[]").unwrap();
    setup.ok(&[
        "delete",
        &namespace,
        "--keys-from",
        nothing.to_str().unwrap(),
    ]);
}

/// The journal files of jobs in the state directory, and the chunks each holds.
fn journaled_chunks(state: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(state.join("jobs")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| {
            text.lines()
                .filter(|l| l.contains(r#""step":"chunk""#))
                .count()
        })
        .sum()
}

/// The successful requests of `api` to paths ending with `suffix`, once the emulator has been
/// quiet a while: a request a stopped job sent is served after its latency, and counted then.
fn served_when_quiet(setup: &Setup, api: Api, suffix: &str) -> usize {
    let mut seen = setup.emulator.requests().len();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = setup.emulator.requests().len();
        if now == seen {
            return setup.served(api, suffix);
        }
        seen = now;
    }
}

/// Lets `child` run until its job has journaled `chunks` chunks, then stops it with `signal`:
/// how it ended.
fn stop_after(
    state: &Path,
    mut child: std::process::Child,
    chunks: usize,
    signal: rustix::process::Signal,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    while journaled_chunks(state) < chunks {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before its stop"
        );
        assert!(Instant::now() < deadline, "no chunk journaled");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, signal).unwrap();
    child.wait().unwrap()
}

/// 6,000 keys seeded in a namespace, an empty store, and an emulator slow enough (its latency
/// setting) that a copy takes a second or two.
async fn slow_pair() -> (Setup, String, String) {
    let setup = Setup::new(Faults::default().latency(Duration::from_millis(15))).await;
    let (namespace, store) = setup.stores();
    let values = (0..6_000).map(|i| (format!("k/{i:05}"), format!("value {i}").into_bytes()));
    setup
        .emulator
        .seed_cloudflare(id(&namespace), values)
        .unwrap();
    setup.emulator.clear_requests();
    (setup, namespace, store)
}

/// A copy killed (SIGKILL) after two chunks and run again with the same command resumes: the
/// store's batches over both runs are at most the six chunks plus the two in flight at the
/// kill, and the stores end equal.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_copy_run_again_resumes_without_redoing_chunks() {
    let (setup, namespace, store) = slow_pair().await;
    let args = [
        "copy",
        namespace.as_str(),
        store.as_str(),
        "--concurrency",
        "2",
        "-q",
    ];
    let child = setup
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed = stop_after(&setup.state, child, 2, rustix::process::Signal::KILL);
    assert!(!killed.success());
    let before = served_when_quiet(&setup, Api::Fastly, "/batch");
    assert!((2..6).contains(&before), "{before} batches before the kill");

    let report: Value =
        serde_json::from_str(&setup.ok(&[&args[..], &["--json"]].concat())).unwrap();
    let resumed = report["resumed_chunks"].as_u64().unwrap();
    assert!(resumed >= 2, "{resumed} chunks taken from the journal");
    let batches = setup.served(Api::Fastly, "/batch");
    assert!(batches <= 6 + 2, "{batches} batches for 6 chunks");
    assert!(
        batches - before <= 6 - resumed as usize,
        "only the chunks not done are written"
    );
    setup.ok(&["verify", &namespace, &store]);
    assert_eq!(
        journaled_chunks(&setup.state),
        0,
        "a finished job leaves no journal"
    );
}

/// A setup with a namespace holding `here`, for the exit code tests.
async fn with_a_key() -> (Setup, String) {
    let setup = Setup::new(Faults::default()).await;
    let (namespace, _) = setup.stores();
    setup.ok(&["put", &namespace, "here", "v"]);
    (setup, namespace)
}

/// Exit code 0: everything asked was done.
#[tokio::test(flavor = "multi_thread")]
async fn exit_0_when_all_is_done() {
    let (setup, namespace) = with_a_key().await;
    let output = setup.run(&["get", &namespace, "here"]);
    assert_eq!(
        (output.status.code(), output.stdout),
        (Some(0), b"v".to_vec())
    );
}

/// Exit code 1: a key was not done: not found, or a job's entry refused.
#[tokio::test(flavor = "multi_thread")]
async fn exit_1_when_a_key_is_not_done() {
    let (setup, namespace) = with_a_key().await;
    let output = setup.run(&["get", &namespace, "not-here"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let lines = setup.path("lines.ndjson");
    std::fs::write(&lines, "{\"key\":\"a\",\"value\":\"YQ==\"}\nnot json\n").unwrap();
    let output = setup.run(&["import", lines.to_str().unwrap(), &namespace]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 2"));
    assert_eq!(
        setup.ok(&["get", &namespace, "a"]),
        "a",
        "the good line is written"
    );
}

/// Exit code 2: usage, a bad address or a missing argument, named with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn exit_2_on_a_bad_command_line() {
    let (setup, namespace) = with_a_key().await;
    let bad = setup.run(&["get", "nowhere:x", "k"]);
    assert_eq!(bad.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("cf:<namespace id or title>"), "{said}");
    assert_eq!(setup.run(&["get", &namespace]).status.code(), Some(2));
    assert_eq!(
        setup.run(&["copy", "a.json", "b.json"]).status.code(),
        Some(2)
    );
}

/// Exit code 3: a credential refused, or missing (the variable to set is named).
#[tokio::test(flavor = "multi_thread")]
async fn exit_3_when_a_credential_is_refused_or_missing() {
    let (setup, namespace) = with_a_key().await;
    let refused = setup
        .command(&["get", &namespace, "here"])
        .env("EDGEKV_EMULATOR_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&namespace) && said.contains("credential"),
        "{said}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_edgekv"))
        .args(["get", "fastly:abc", "k"])
        .env_remove("EDGEKV_EMULATOR")
        .env_remove("FASTLY_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("FASTLY_API_TOKEN"),
        "the fix is named: {said}"
    );
}

/// The services' credentials never go to an emulator: with one set, a request to the
/// emulator still carries the emulator's token (the emulator would refuse any other).
#[tokio::test(flavor = "multi_thread")]
async fn a_real_credential_is_never_sent_to_an_emulator() {
    let (setup, namespace) = with_a_key().await;
    let store = setup
        .ok(&["stores", "create", "fastly", "s"])
        .trim()
        .to_string();
    for address in [namespace.as_str(), store.as_str()] {
        setup.ok(&["put", address, "k", "v"]);
        // The services' account too: the emulator serves its own.
        let output = setup
            .command(&["get", address, "k"])
            .env("CLOUDFLARE_API_TOKEN", "REAL-SECRET")
            .env("CLOUDFLARE_ACCOUNT_ID", "ffffffffffffffffffffffffffffffff")
            .env("FASTLY_API_TOKEN", "REAL-SECRET")
            .output()
            .unwrap();
        assert!(output.status.success(), "{address}: {output:?}");
    }
    // `--emulator URL` with a space would take the URL for an argument: refused.
    let spaced = setup.run(&[
        "delete",
        &namespace,
        "k",
        "--emulator",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(spaced.status.code(), Some(2));
    assert_eq!(setup.ok(&["get", &namespace, "k"]), "v");
}

/// A mistyped store kind is not taken for a file to create, nor an unknown extension for a
/// directory; an empty prefix is not taken for "every key".
#[tokio::test(flavor = "multi_thread")]
async fn mistakes_that_look_like_files_or_everything_are_refused() {
    let (setup, namespace) = with_a_key().await;
    let typo = setup.run(&["copy", &namespace, "fastlyy:abc"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(!Path::new("fastlyy:abc").exists());
    let txt = setup.path("out.txt");
    let unknown = setup.run(&["export", &namespace, txt.to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(!txt.exists());
    let everything = setup.run(&["delete", &namespace, "--prefix", ""]);
    assert_eq!(everything.status.code(), Some(2));
    assert_eq!(setup.ok(&["get", &namespace, "here"]), "v");
    setup.ok(&["delete", &namespace, "--all"]);
    assert_eq!(setup.ok(&["list", &namespace]), "");
}

/// Exit code 4: nothing answers at the address.
#[tokio::test(flavor = "multi_thread")]
async fn exit_4_when_the_service_is_unreachable() {
    let (setup, namespace) = with_a_key().await;
    let output = setup
        .command(&["get", &namespace, "here", "--emulator=http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
}

/// Exit code 5: anything else (here: a file that is not there).
#[tokio::test(flavor = "multi_thread")]
async fn exit_5_on_any_other_failure() {
    let (setup, namespace) = with_a_key().await;
    let output = setup.run(&["import", "/no/such/file.ndjson", &namespace]);
    assert_eq!(output.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/file.ndjson"));
}

/// `edgekv emulator` serves both APIs where it says, keeps its stores with `--persist`, and
/// stops cleanly on SIGINT: started again on the same directory, it serves what was written.
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_command_serves_and_persists() {
    let dir = std::env::temp_dir().join(format!("edgekv-cli-emu-{}", fastrand::u64(..)));
    let serve = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgekv"))
            .args([
                "emulator",
                "--port",
                "0",
                "--persist",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let url = line.strip_prefix("emulator: ").unwrap().trim().to_string();
        (child, url)
    };
    let edgekv = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_edgekv"))
            .args(args)
            .env("EDGEKV_EMULATOR", url)
            .env_remove("FASTLY_API_TOKEN")
            .output()
            .unwrap()
    };
    let (child, url) = serve();
    let created = edgekv(&url, &["stores", "create", "fastly", "kept"]);
    let store = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        edgekv(&url, &["put", &store, "k", "survives"])
            .status
            .success()
    );
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let mut child = child;
    assert!(child.wait().unwrap().success(), "stops cleanly");

    let (mut again, url) = serve();
    let got = edgekv(&url, &["get", &store, "k"]);
    assert_eq!(got.stdout, b"survives");
    let _ = again.kill();
    let _ = again.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pseudo-terminal: the controller, and the terminal side for a child's stdio.
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let controller =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&controller).unwrap();
    unlockpt(&controller).unwrap();
    let name = ptsname(&controller, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let size = rustix::termios::Winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&terminal, size).unwrap();
    (std::fs::File::from(controller), terminal)
}

/// Everything the terminal side was sent, read on a thread until every holder closed it.
fn drain(mut controller: std::fs::File) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match controller.read(&mut buf) {
                Ok(0) | Err(_) => break, // EIO once the last holder of the terminal is gone
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    })
}

/// `edgekv ARGS` with its stderr on a new pseudo-terminal: the child, and what the terminal
/// will have been sent once the child is gone.
fn on_terminal(
    setup: &Setup,
    args: &[&str],
    stdout: Stdio,
) -> (std::process::Child, std::thread::JoinHandle<Vec<u8>>) {
    let (controller, terminal) = pty();
    let child = setup
        .command(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(terminal)
        .spawn()
        .unwrap();
    (child, drain(controller))
}

/// On a terminal the bar is drawn and then cleared; with stdout piped and stderr on the
/// terminal, stdout carries exactly the data; with both piped, neither carries an escape code;
/// `--json` prints JSON.
#[tokio::test(flavor = "multi_thread")]
async fn bars_go_to_a_terminal_only_and_data_stays_exact() {
    let (setup, namespace, store) = slow_pair().await;

    // (1) stderr on a terminal: drawn, then cleared.
    let (mut child, seen) = on_terminal(&setup, &["copy", &namespace, &store], Stdio::null());
    assert!(child.wait().unwrap().success());
    let seen = String::from_utf8_lossy(&seen.join().unwrap()).into_owned();
    let last_bar = seen.rfind("keys/s").expect("a bar was drawn");
    assert!(seen.contains('\u{1b}'), "drawn with escape codes");
    assert!(
        seen[last_bar..].contains("\u{1b}[2K"),
        "and cleared: {:?}",
        &seen[last_bar..]
    );
    assert!(
        seen[last_bar..].contains("requests to the source"),
        "the report stays, after the bar"
    );

    // (2) stdout piped, stderr on the terminal: stdout is exactly the file an export writes.
    let file = setup.path("k.ndjson");
    setup.ok(&["export", &namespace, file.to_str().unwrap()]);
    let (child, seen) = on_terminal(&setup, &["export", &namespace, "-"], Stdio::piped());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(
        output.stdout == std::fs::read(&file).unwrap(),
        "stdout is the data, exactly"
    );
    assert!(
        !seen.join().unwrap().is_empty(),
        "status went to the terminal"
    );

    // (3) both piped, and verbose: plain lines, no escape code anywhere.
    let output = setup.run(&["export", &namespace, "-", "-v"]);
    assert!(output.status.success());
    assert_eq!(output.stdout, std::fs::read(&file).unwrap());
    assert!(!output.stdout.contains(&0x1b) && !output.stderr.contains(&0x1b));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("keys/s"),
        "a line a chunk"
    );

    // --json: the final report, parsed.
    let report: Value =
        serde_json::from_str(&setup.ok(&["copy", &namespace, &store, "--json"])).unwrap();
    assert_eq!(report["copied"], json!(6000));
}

/// SIGINT to a job on a terminal: it exits 130 and prints the command that resumes it; that
/// command completes the job, nothing lost and no finished chunk redone.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_job_says_how_to_resume_and_resumes() {
    let (setup, namespace, store) = slow_pair().await;
    let args = ["copy", &namespace, &store, "--concurrency", "2"];
    let (child, seen) = on_terminal(&setup, &args, Stdio::null());
    let interrupted = stop_after(&setup.state, child, 2, rustix::process::Signal::INT);
    assert_eq!(interrupted.code(), Some(130));
    let said = String::from_utf8_lossy(&seen.join().unwrap()).into_owned();
    let resume = said
        .lines()
        .skip_while(|l| !l.contains("run it again to resume"))
        .nth(1)
        .expect("the command is printed")
        .trim()
        .to_string();
    assert!(
        resume.contains("copy") && resume.contains(&namespace),
        "{resume}"
    );
    let before = served_when_quiet(&setup, Api::Fastly, "/batch");

    // The printed command, as a shell would run it (its words need no quoting here).
    let words: Vec<&str> = resume.split_whitespace().skip(1).collect();
    let report: Value =
        serde_json::from_str(&setup.ok(&[&words[..], &["--json"]].concat())).unwrap();
    let resumed = report["resumed_chunks"].as_u64().unwrap() as usize;
    assert!(resumed >= 2, "{resumed} chunks taken from the journal");
    let after = setup.served(Api::Fastly, "/batch");
    assert!(
        after - before <= 6 - resumed,
        "{before} then {after} batches: chunks redone"
    );
    setup.ok(&["verify", &namespace, &store]);
}
