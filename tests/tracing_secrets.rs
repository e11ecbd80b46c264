//! What the crate logs: a span per attempt with the operation and path template, never a
//! credential, a key, a value or metadata.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use httpmock::MockServer;
use serde_json::json;
use support::fast_policy;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

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

#[tokio::test]
async fn puts_are_traced_without_credentials_keys_values_or_metadata() {
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
            then.status(503).json_body(json!({"success": false, "errors": [{"code": 10001, "message": format!("no luck for {KEY}")}], "messages": [], "result": null}));
        })
        .await;

    let fastly = edgekv::fastly::Client::builder(TOKEN)
        .base_url(server.base_url())
        .policy(fast_policy())
        .build()
        .unwrap();
    let options = edgekv::fastly::PutOptions::new().metadata(METADATA);
    let fastly_error = fastly
        .store(support::FASTLY_STORE)
        .put(KEY, VALUE, options)
        .await
        .unwrap_err();

    let credential = edgekv::Credential::CloudflareGlobalKey {
        email: EMAIL.into(),
        key: TOKEN.into(),
    };
    let cloudflare = edgekv::cloudflare::Client::builder(credential, support::CF_ACCOUNT)
        .base_url(server.base_url())
        .policy(fast_policy())
        .build()
        .unwrap();
    let options = edgekv::cloudflare::PutOptions::new().metadata(json!({"m": METADATA}));
    let cloudflare_error = cloudflare
        .namespace(support::CF_NAMESPACE)
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
        fastly.store(support::FASTLY_STORE),
        cloudflare.namespace(support::CF_NAMESPACE)
    );
    for secret in [TOKEN, EMAIL] {
        assert!(!debug.contains(secret), "{debug}");
    }
}
