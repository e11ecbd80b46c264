//! `edgekv-emulator --persist DIR`: a write the binary acknowledged survives SIGKILL, and a
//! restart on the same directory serves it byte-exact.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use edgekv::emulator::{DEFAULT_ACCOUNT, DEFAULT_TOKEN};
use edgekv::{cloudflare, fastly};

/// The emulator binary on a free port, persisting in a directory.
struct Server {
    child: Child,
    fastly: fastly::Client,
    cloudflare: cloudflare::Client,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgekv-emulator"))
            .args(["--port", "0", "--persist"])
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the emulator binary starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut url = |prefix: &str| {
            let line = lines
                .next()
                .and_then(Result::ok)
                .expect("the emulator prints its URLs");
            line.strip_prefix(prefix).expect("a URL").to_string()
        };
        let (fastly_url, cloudflare_url) = (url("fastly: "), url("cloudflare: "));
        std::thread::spawn(move || lines.for_each(drop));
        let fastly = fastly::Client::builder(DEFAULT_TOKEN)
            .base_url(fastly_url)
            .build()
            .expect("a client");
        let credential = DEFAULT_TOKEN;
        let cloudflare = cloudflare::Client::builder(credential, DEFAULT_ACCOUNT)
            .base_url(cloudflare_url)
            .build()
            .expect("a client");
        Server {
            child,
            fastly,
            cloudflare,
        }
    }

    /// SIGKILL: no chance to flush anything.
    fn kill(mut self) {
        self.child.kill().expect("killed");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgekv-persist-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

const BINARY: &[u8] = &[0, 159, 146, 150, 255, b'\n', b'\r', 0x7f];

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_byte_exact() {
    let dir = scratch_dir();
    let server = Server::start(&dir);

    // Fastly: a store, an item with binary value, metadata and TTL, a batch line, a delete.
    let created = server
        .fastly
        .create_store("persisted", None)
        .await
        .expect("store");
    let store = server.fastly.store(created.id.clone());
    let options = fastly::PutOptions::new()
        .metadata("m\u{e9}ta {\"x\":1}")
        .ttl_seconds(3600);
    store.put("bin", BINARY, options).await.expect("put");
    let entries = [fastly::BulkEntry::new("batched", &b"\x01\x02"[..]).metadata("b")];
    let report = store
        .bulk_write(entries, &fastly::BulkOptions::default())
        .await
        .expect("batch");
    assert!(report.failed.is_empty());
    store
        .put("gone", "x", fastly::PutOptions::new())
        .await
        .expect("put");
    store
        .delete("gone", fastly::DeleteOptions::new())
        .await
        .expect("delete");
    server
        .fastly
        .rename_store(&created.id, "renamed")
        .await
        .expect("rename");
    let fastly_before = store.get("bin").await.expect("get").expect("there");
    let generation = fastly_before.generation();
    let batched_generation = store
        .get("batched")
        .await
        .expect("get")
        .expect("there")
        .generation();

    // Cloudflare: a namespace, a binary value with metadata and TTL, a bulk write, a delete.
    let ns_info = server
        .cloudflare
        .create_namespace("persisted")
        .await
        .expect("namespace")
        .into_inner();
    let ns = server.cloudflare.namespace(ns_info.id.clone());
    let metadata = serde_json::json!({"kind": "blob", "n": 1.5, "nested": {"z": [1, null]}});
    let options = cloudflare::PutOptions::new()
        .metadata(metadata.clone())
        .expiration_ttl(3600);
    ns.put("bin", BINARY, options).await.expect("put");
    let entries =
        [cloudflare::BulkEntry::bytes("bulk", &b"\xfe\x00"[..]).metadata(serde_json::json!("m"))];
    let report = ns
        .bulk_write(entries, &cloudflare::BulkOptions::default())
        .await
        .expect("bulk");
    assert!(report.failed.is_empty());
    ns.put("gone", "x", cloudflare::PutOptions::new())
        .await
        .expect("put");
    ns.delete("gone").await.expect("delete");
    let expiration = ns
        .get("bin")
        .await
        .expect("get")
        .expect("there")
        .expiration()
        .expect("an expiration");

    server.kill();
    let server = Server::start(&dir);

    let store = server.fastly.store(created.id.clone());
    let item = store.get("bin").await.expect("get").expect("survived");
    assert_eq!(item.generation(), generation);
    assert_eq!(item.metadata(), Some("m\u{e9}ta {\"x\":1}"));
    assert_eq!(item.bytes().await.expect("body").as_ref(), BINARY);
    let batched = store.get("batched").await.expect("get").expect("survived");
    assert_eq!(batched.generation(), batched_generation);
    assert_eq!(batched.metadata(), Some("b"));
    assert_eq!(batched.bytes().await.expect("body").as_ref(), b"\x01\x02");
    assert!(store.get("gone").await.expect("get").is_none());
    let info = server.fastly.get_store(&created.id).await.expect("store");
    assert_eq!(info.name, "renamed");
    assert_eq!(info.created_at, created.created_at);
    // New writes keep rising above the replayed generations.
    store
        .put("bin", "new", fastly::PutOptions::new())
        .await
        .expect("put");
    let newer = store.get("bin").await.expect("get").expect("there");
    assert!(newer.generation() > generation);

    let ns = server.cloudflare.namespace(ns_info.id.clone());
    let value = ns.get("bin").await.expect("get").expect("survived");
    assert_eq!(value.expiration(), Some(expiration));
    assert_eq!(value.bytes().await.expect("body").as_ref(), BINARY);
    assert_eq!(ns.metadata("bin").await.expect("metadata"), Some(metadata));
    let bulk = ns.get("bulk").await.expect("get").expect("survived");
    assert_eq!(bulk.bytes().await.expect("body").as_ref(), b"\xfe\x00");
    assert_eq!(
        ns.metadata("bulk").await.expect("metadata"),
        Some(serde_json::json!("m"))
    );
    assert!(ns.get("gone").await.expect("get").is_none());
    let info = server
        .cloudflare
        .get_namespace(&ns_info.id)
        .await
        .expect("namespace")
        .into_inner();
    assert_eq!(info.title, "persisted");

    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_torn_last_record_is_ignored_on_restart() {
    let dir = scratch_dir();
    let server = Server::start(&dir);
    let created = server
        .fastly
        .create_store("torn", None)
        .await
        .expect("store");
    let store = server.fastly.store(created.id.clone());
    store
        .put("kept", "1", fastly::PutOptions::new())
        .await
        .expect("put");
    server.kill();

    // A crash in the middle of appending the next record.
    let log = dir.join("edgekv-emulator.log");
    let mut text = std::fs::read(&log).expect("the log");
    text.extend_from_slice(br#"{"op":"fastly_put","store":"#);
    std::fs::write(&log, &text).expect("torn");

    let server = Server::start(&dir);
    let store = server.fastly.store(created.id.clone());
    let kept = store.get("kept").await.expect("get").expect("survived");
    assert_eq!(kept.bytes().await.expect("body"), "1");
    store
        .put("after", "2", fastly::PutOptions::new())
        .await
        .expect("put");
    server.kill();
    let server = Server::start(&dir);
    let store = server.fastly.store(created.id);
    assert!(store.get("after").await.expect("get").is_some());
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
