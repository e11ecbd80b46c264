//! What the crate logs: a span per attempt with the operation and path template, never a
//! credential, a key, a value or metadata.
//!
//! The test runs alone in a child process. Whether a call site is wanted is cached once per
//! process, decided on the thread that first reaches it; the subscriber here is scoped to this
//! test's thread, so another test reaching the crate's call sites first, in parallel, could
//! make them silent here.

use std::io::Write;
use std::sync::{Arc, Mutex};

use httpmock::MockServer;
use serde_json::json;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::support::envelope::cf_failure;
use crate::support::{CF_NAMESPACE, FASTLY_STORE, child, cloudflare_at, fast_policy, fastly_at};

const TOKEN: &str = "tok-3f9c1a77e2";
const EMAIL: &str = "owner-5c2e@example.com";
const KEY: &str = "key-8d41b0c6";
const VALUE: &str = "value-b7e29f14";
const METADATA: &str = "meta-61aa0d9e";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Set in the child process that runs the test.
const ALONE: &str = "EDGEKV_TRACING_ALONE";

#[test]
fn puts_are_traced_without_credentials_keys_values_or_metadata() {
    if std::env::var_os(ALONE).is_none() {
        let test = "puts_are_traced_without_credentials_keys_values_or_metadata";
        let output = child::run_alone(&child::test_name(module_path!(), test), (ALONE, "1"));
        assert!(
            child::passed_alone(&output),
            "failed in its child process ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(puts_are_traced());
}

async fn puts_are_traced() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start_async().await;
    // Every attempt answers 503, quoting the key the way a service might, so retries and
    // failures are traced too.
    let unavailable = server
        .mock_async(|when, then| {
            when.any_request();
            then.status(503)
                .json_body(cf_failure(10001, &format!("no luck for {KEY}")));
        })
        .await;

    let fastly = fastly_at(&server.base_url(), TOKEN, fast_policy());
    let options = edgekv::fastly::PutOptions::new().metadata(METADATA);
    let fastly_error = fastly
        .store(FASTLY_STORE)
        .put(KEY, VALUE, options)
        .await
        .unwrap_err();

    let credential = edgekv::cloudflare::Auth::GlobalKey {
        email: EMAIL.into(),
        key: TOKEN.into(),
    };
    let cloudflare = cloudflare_at(&server.base_url(), credential, fast_policy());
    let options = edgekv::cloudflare::PutOptions::new().metadata(json!({"m": METADATA}));
    let cloudflare_error = cloudflare
        .namespace(CF_NAMESPACE)
        .put(KEY, VALUE, options)
        .await
        .unwrap_err();
    assert_eq!(
        (fastly_error.attempts(), cloudflare_error.attempts()),
        (3, 3)
    );
    assert_eq!(unavailable.calls_async().await, 6);

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works: every attempt of both calls is there, by operation and template.
    assert!(log.contains("edgekv.request"), "{log}");
    assert!(
        log.contains("kv_store_upsert_item")
            && log.contains("/resources/stores/kv/{store_id}/keys/{key}"),
        "{log}"
    );
    assert!(
        log.contains("value_put") && log.contains("{key_name}"),
        "{log}"
    );
    assert!(
        log.contains("attempt=3") && log.contains("status=503"),
        "{log}"
    );
    for secret in [TOKEN, EMAIL, KEY, VALUE, METADATA] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the trace:\n{log}"
        );
    }
    let debug = format!(
        "{fastly:?} {cloudflare:?} {:?} {:?}",
        fastly.store(FASTLY_STORE),
        cloudflare.namespace(CF_NAMESPACE)
    );
    for secret in [TOKEN, EMAIL] {
        assert!(!debug.contains(secret), "{debug}");
    }
}
