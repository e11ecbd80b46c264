//! Cloudflare bulk calls: split to the limits, retried by key, and every key accounted for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgekv::cloudflare::{BulkEntry, BulkGetOptions, BulkOptions, BulkValue, limits};
use httpmock::MockServer;
use httpmock::prelude::HttpMockResponse;
use serde_json::{Value, json};

use crate::support::envelope::{cf_failure, cf_ok};
use crate::support::{CF_NAMESPACE, cf_path, cloudflare_client, exact, numbered_key};

fn fast_retries() -> BulkOptions {
    let mut options = BulkOptions::default();
    options.min_key_interval = Duration::from_millis(1);
    options
}

/// Answers bulk writes with `unsuccessful_keys` chosen by `unsuccessful(keys in the body)`, and
/// records every request's keys.
fn bulk_answer(
    log: Arc<Mutex<Vec<Vec<String>>>>,
    unsuccessful: impl Fn(&[String]) -> Vec<String> + Send + Sync + 'static,
) -> impl Fn(&httpmock::HttpMockRequest) -> HttpMockResponse + Send + Sync + 'static {
    move |req| {
        let items: Vec<Value> = serde_json::from_slice(req.body_ref()).unwrap();
        let keys: Vec<String> = items
            .iter()
            .map(|item| {
                item.get("key")
                    .and_then(Value::as_str)
                    .or(item.as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        let failed = unsuccessful(&keys);
        log.lock().unwrap().push(keys.clone());
        let result =
            json!({"successful_key_count": keys.len() - failed.len(), "unsuccessful_keys": failed});
        HttpMockResponse::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(cf_ok(result).to_string())
            .build()
    }
}

#[tokio::test]
async fn a_25000_entry_write_is_split_10000_10000_5000_and_retries_unsuccessful_keys() {
    let server = MockServer::start_async().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (flaky, doomed) = (numbered_key(7), numbered_key(12_345));
    let answer = bulk_answer(log.clone(), {
        let (flaky, doomed) = (flaky.clone(), doomed.clone());
        move |keys| {
            // The flaky key fails only when sent with its whole chunk; the doomed one always.
            keys.iter()
                .filter(|k| **k == doomed || (**k == flaky && keys.len() > 1))
                .cloned()
                .collect()
        }
    });
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk")).header("content-type", "application/json");
            then.respond_with(answer);
        })
        .await;

    let entries = (0..25_000).map(|i| BulkEntry::text(numbered_key(i), format!("value {i}")));
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write(entries, &fast_retries())
        .await
        .unwrap();

    assert_eq!(report.submitted(), 25_000);
    assert_eq!(report.written, 24_999);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        (report.failed[0].key.as_str(), report.failed[0].index),
        (doomed.as_str(), 12_345)
    );
    let reason = &report.failed[0].reason;
    assert!(
        reason.contains("unsuccessful_keys after 3 sends; the retry budget is spent"),
        "{reason}"
    );

    let log = log.lock().unwrap().clone();
    let mut first_sends: Vec<usize> = log.iter().map(Vec::len).filter(|n| *n > 1).collect();
    first_sends.sort_unstable();
    assert_eq!(first_sends, [5_000, 10_000, 10_000]);
    let resends: Vec<&str> = log
        .iter()
        .filter(|keys| keys.len() == 1)
        .map(|keys| keys[0].as_str())
        .collect();
    assert_eq!(
        resends.iter().filter(|k| **k == flaky).count(),
        1,
        "the flaky key is resent once"
    );
    // Resends share the chunk's budget of max_attempts (3) requests: two after the first send.
    let doomed_resends = resends.iter().filter(|k| **k == doomed).count();
    assert_eq!(
        doomed_resends, 2,
        "the doomed key is resent until the budget is spent"
    );
    assert_eq!(mock.calls_async().await, 6);
}

#[tokio::test]
async fn the_byte_bound_splits_a_write() {
    let server = MockServer::start_async().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let answer = bulk_answer(log.clone(), |_| Vec::new());
    let recorded = sizes.clone();
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk")).is_true(move |req| {
                recorded.lock().unwrap().push(req.body_ref().len());
                true
            });
            then.respond_with(answer);
        })
        .await;
    let mut options = fast_retries();
    options.max_request_bytes = 1024;
    let entries = (0..20).map(|i| BulkEntry::text(numbered_key(i), "v".repeat(100)));
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write(entries, &options)
        .await
        .unwrap();

    assert_eq!((report.written, report.failed.len()), (20, 0));
    let sizes = sizes.lock().unwrap();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(
        sizes.iter().all(|size| *size <= 1024),
        "a request exceeded the bound: {sizes:?}"
    );
    let order: Vec<String> = log.lock().unwrap().concat();
    assert_eq!(order.len(), 20);
}

#[test]
fn the_default_byte_bound_is_the_services_100_mb() {
    assert_eq!(limits::BULK_WRITE_MAX_BYTES, 100_000_000);
    assert_eq!(BulkOptions::default().max_request_bytes, 100_000_000);
    assert_eq!(limits::BULK_WRITE_MAX_PAIRS, 10_000);
}

#[tokio::test]
async fn entries_refused_locally_are_reported_and_the_rest_written() {
    let server = MockServer::start_async().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer = bulk_answer(log.clone(), |_| Vec::new());
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk"));
            then.respond_with(answer);
        })
        .await;
    let mut options = fast_retries();
    options.max_request_bytes = 2048;
    let entries = vec![
        BulkEntry::text("ok-1", "v"),
        BulkEntry::text("k".repeat(513), "v"),
        BulkEntry::text("ttl", "v").expiration_ttl(30),
        BulkEntry::text("huge", "x".repeat(4096)),
        BulkEntry::text("ok-2", "v")
            .expiration_ttl(60)
            .metadata(json!({"a": 1})),
    ];
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write(entries, &options)
        .await
        .unwrap();
    assert_eq!(report.written, 2);
    let failed: Vec<(u64, &str)> = report
        .failed
        .iter()
        .map(|f| (f.index, f.reason.as_str()))
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed[0].0 == 1 && failed[0].1.contains("over the limit of 512"),
        "{failed:?}"
    );
    assert!(
        failed[1].0 == 2 && failed[1].1.contains("under the minimum of 60"),
        "{failed:?}"
    );
    assert!(
        failed[2].0 == 3 && failed[2].1.contains("over the request bound of 2048"),
        "{failed:?}"
    );
    assert_eq!(log.lock().unwrap().concat(), ["ok-1", "ok-2"]);
}

#[tokio::test]
async fn a_write_whose_every_entry_is_refused_sends_nothing() {
    let server = MockServer::start_async().await;
    let any = server
        .mock_async(|when, then| {
            when.any_request();
            then.status(500);
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    let entries = [BulkEntry::text(".", "v"), BulkEntry::text("..", "v")];
    let report = namespace
        .bulk_write(entries, &fast_retries())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (0, 2));
    let report = namespace
        .bulk_delete([String::new()], &fast_retries())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (0, 1));
    assert_eq!(
        any.calls_async().await,
        0,
        "no request for a chunk with nothing to send"
    );
}

#[tokio::test]
async fn a_chunk_the_service_rejects_reports_each_of_its_keys() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk"));
            then.status(413)
                .json_body(cf_failure(10024, "payload too large"));
        })
        .await;
    let entries = (0..3).map(|i| BulkEntry::text(numbered_key(i), "v"));
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write(entries, &fast_retries())
        .await
        .unwrap();
    assert_eq!((report.written, report.submitted()), (0, 3));
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.reason.contains("payload too large (10024)")),
        "{:?}",
        report.failed
    );
    let indices: Vec<u64> = report.failed.iter().map(|f| f.index).collect();
    assert_eq!(indices, [0, 1, 2]);
}

#[tokio::test]
async fn binary_values_go_base64_with_the_flag_and_every_field_is_sent() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk")).json_body(json!([
                {"key": "bin", "value": "AP8Q", "base64": true},
                {"key": "txt", "value": "hi", "expiration": 1578435000, "expiration_ttl": 300, "metadata": {"m": 1}}
            ]));
            then.status(200).json_body(cf_ok(json!({"successful_key_count": 2, "unsuccessful_keys": []})));
        })
        .await;
    let entries = vec![
        BulkEntry::bytes("bin", vec![0x00, 0xff, 0x10]),
        BulkEntry::text("txt", "hi")
            .expiration(1_578_435_000)
            .expiration_ttl(300)
            .metadata(json!({"m": 1})),
    ];
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write(entries, &fast_retries())
        .await
        .unwrap();
    assert_eq!(report.written, 2);
    mock.assert_async().await;
}

#[tokio::test]
async fn entries_are_read_from_a_stream_as_requests_go_out() {
    let server = MockServer::start_async().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer = bulk_answer(log.clone(), |_| Vec::new());
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk"));
            then.respond_with(answer);
        })
        .await;
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let entries = futures_util::stream::iter(0..25_000).map(move |i| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, edgekv::Error>(BulkEntry::text(numbered_key(i), "v"))
    });
    let mut options = fast_retries();
    options.concurrency = 1;
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_write_stream(entries, &options)
        .await
        .unwrap();
    assert_eq!(report.written, 25_000);
    assert_eq!(pulled.load(std::sync::atomic::Ordering::Relaxed), 25_000);
}

use futures_util::StreamExt as _;

#[tokio::test]
async fn bulk_delete_is_split_at_10000_keys() {
    let server = MockServer::start_async().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let answer = bulk_answer(log.clone(), |_| Vec::new());
    server
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/delete"));
            then.respond_with(answer);
        })
        .await;
    let keys: Vec<String> = (0..10_001).map(numbered_key).collect();
    let report = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .bulk_delete(keys, &fast_retries())
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.written, report.failed.len()),
        (10_001, 0, 0)
    );
    let mut sizes: Vec<usize> = log.lock().unwrap().iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 10_000]);
}

#[tokio::test]
async fn bulk_get_is_split_at_100_keys_and_decodes_both_shapes() {
    let server = MockServer::start_async().await;
    let plain = server
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/get")).is_true(|req| {
                let body: Value = serde_json::from_slice(req.body_ref()).unwrap();
                body["withMetadata"] == json!(false) && body["type"] == json!("text")
            });
            then.respond_with(|req: &httpmock::HttpMockRequest| {
                let body: Value = serde_json::from_slice(req.body_ref()).unwrap();
                let values: serde_json::Map<String, Value> = body["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        let k = k.as_str().unwrap();
                        (
                            k.to_string(),
                            if k == "gone" {
                                Value::Null
                            } else {
                                json!(format!("value of {k}"))
                            },
                        )
                    })
                    .collect();
                assert!(values.len() <= 100);
                HttpMockResponse::builder()
                    .status(200)
                    .body(cf_ok(json!({"values": values})).to_string())
                    .build()
            });
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    let mut keys: Vec<String> = (0..149).map(numbered_key).collect();
    keys.push("gone".into());
    let values = namespace
        .bulk_get(keys, BulkGetOptions::default())
        .await
        .unwrap();
    assert_eq!(values.len(), 150);
    assert_eq!(
        values[&numbered_key(120)].as_ref().unwrap().value,
        json!("value of key-00120")
    );
    assert_eq!(values["gone"], None);
    assert_eq!(plain.calls_async().await, 2);

    let with_metadata = MockServer::start_async().await;
    with_metadata
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/get"))
                .json_body(json!({"keys": ["a", "b"], "type": "json", "withMetadata": true}));
            then.status(200).json_body(cf_ok(json!({"values": {
                "a": {"value": {"n": 1}, "metadata": {"m": true}, "expiration": 1578435000},
                "b": null
            }})));
        })
        .await;
    let options = BulkGetOptions {
        json: true,
        with_metadata: true,
    };
    let values = cloudflare_client(&with_metadata)
        .namespace(CF_NAMESPACE)
        .bulk_get(["a", "b"], options)
        .await
        .unwrap();
    let a: &BulkValue = values["a"].as_ref().unwrap();
    assert_eq!(
        (a.value.clone(), a.metadata.clone(), a.expiration),
        (
            json!({"n": 1}),
            Some(json!({"m": true})),
            Some(1_578_435_000)
        )
    );
    assert_eq!(values["b"], None);
}
