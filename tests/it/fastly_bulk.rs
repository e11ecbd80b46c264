//! Fastly batch writes: ndjson with base64 values, chunked, every key accounted for by the
//! caller's own index.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use edgekv::fastly::{BulkEntry, BulkOptions, limits};
use httpmock::MockServer;
use httpmock::prelude::HttpMockResponse;
use serde_json::{Value, json};

use crate::support::{FASTLY_STORE, FASTLY_TOKEN, exact, fastly_client, fastly_path, numbered_key};

fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_25000_entry_batch_goes_in_chunks_and_a_refused_chunk_fails_with_the_named_line_under_the_callers_index()
 {
    let server = MockServer::start_async().await;
    let chunk_sizes = Arc::new(Mutex::new(Vec::new()));
    let recorded = chunk_sizes.clone();
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/batch"))
                .header("fastly-key", FASTLY_TOKEN)
                .header("content-type", "application/x-ndjson");
            then.respond_with(move |req: &httpmock::HttpMockRequest| {
                let lines = lines(req.body_ref());
                recorded.lock().unwrap().push(lines.len());
                let errors: Vec<Value> = lines
                    .iter()
                    .enumerate()
                    .filter(|(_, line)| line["key"] == "key-12345")
                    .map(|(i, line)| json!({"key": line["key"], "index": i, "code": "400", "reason": "metadata rejected"}))
                    .collect();
                let (status, title) = if errors.is_empty() { (200, "success") } else { (400, "some items failed") };
                HttpMockResponse::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(json!({"type": "", "title": title, "errors": errors}).to_string())
                    .build()
            });
        })
        .await;

    let entries = (0..25_000).map(|i| BulkEntry::new(numbered_key(i), format!("value {i}")));
    let report = fastly_client(&server)
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();

    assert_eq!(report.submitted(), 25_000);
    // A 400 does not say which other lines of its chunk were written, so none of the chunk's
    // 10,000 lines count as written; the line the service named keeps its own reason.
    assert_eq!(report.written, 15_000);
    assert_eq!(report.failed.len(), 10_000);
    let failed = report
        .failed
        .iter()
        .find(|f| f.key == "key-12345")
        .expect("the named line is reported");
    assert_eq!(
        failed.index, 12_345,
        "the caller's index, not the line in its chunk"
    );
    assert_eq!(failed.reason, "400: metadata rejected");
    assert!(
        report
            .failed
            .iter()
            .all(|f| (10_000..20_000).contains(&f.index))
    );
    let mut sizes = chunk_sizes.lock().unwrap().clone();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [5_000, limits::BATCH_MAX_LINES, limits::BATCH_MAX_LINES]
    );
    assert_eq!(mock.calls_async().await, 3);
}

#[tokio::test]
async fn each_line_carries_the_base64_value_and_its_options() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/batch")).is_true(|req| {
                lines(req.body_ref())
                    == [
                        json!({"key": "batch-1", "value": "VkFMVUU="}),
                        json!({"key": "bin", "value": base64::engine::general_purpose::STANDARD.encode([0u8, 255, 16]),
                               "time_to_live_sec": 60, "metadata": "m", "background_fetch": true}),
                    ]
                    && req.body_ref().ends_with(b"\n")
            });
            then.status(200).body(r#"{"type":"","title":"success","errors":[]}"#);
        })
        .await;
    let entries = vec![
        BulkEntry::new("batch-1", "VALUE"),
        BulkEntry::new("bin", vec![0u8, 255, 16])
            .ttl_seconds(60)
            .metadata("m")
            .background_fetch(true),
    ];
    let report = fastly_client(&server)
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (2, 0));
    mock.assert_async().await;
}

#[tokio::test]
async fn the_byte_bound_splits_a_batch_and_local_checks_are_reported() {
    let server = MockServer::start_async().await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let recorded = sizes.clone();
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/batch")).is_true(move |req| {
                recorded.lock().unwrap().push(req.body_ref().len());
                true
            });
            then.status(200)
                .body(r#"{"type":"","title":"success","errors":[]}"#);
        })
        .await;
    let mut options = BulkOptions::default();
    options.max_request_bytes = 1024;
    let mut entries: Vec<BulkEntry> = (0..30)
        .map(|i| BulkEntry::new(numbered_key(i), "v".repeat(60)))
        .collect();
    entries.insert(5, BulkEntry::new("..", "v"));
    entries.insert(9, BulkEntry::new("m", "v").metadata("x".repeat(2001)));
    let report = fastly_client(&server)
        .store(FASTLY_STORE)
        .bulk_write(entries, &options)
        .await
        .unwrap();
    assert_eq!((report.written, report.submitted()), (30, 32));
    let refused: Vec<u64> = report.failed.iter().map(|f| f.index).collect();
    assert_eq!(refused, [5, 9]);
    let sizes = sizes.lock().unwrap().clone();
    assert!(
        sizes.len() > 1 && sizes.iter().all(|s| *s <= 1024),
        "{sizes:?}"
    );
}

#[tokio::test]
async fn line_errors_are_decoded_tolerantly() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/batch"));
            // Index as text, a numeric code, `message` instead of `reason`, and one error naming
            // only its key.
            then.status(200).body(r#"{"title":"partial","errors":[{"index":"1","code":413,"message":"too large"},{"key":"c"}]}"#);
        })
        .await;
    let entries = ["a", "b", "c"].map(|k| BulkEntry::new(k, "v"));
    let report = fastly_client(&server)
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    let failed: Vec<(&str, u64, &str)> = report
        .failed
        .iter()
        .map(|f| (f.key.as_str(), f.index, f.reason.as_str()))
        .collect();
    assert_eq!(failed[0], ("b", 1, "413: too large"));
    assert_eq!((failed[1].0, failed[1].1), ("c", 2));
}

#[tokio::test]
async fn a_chunk_the_service_rejects_whole_reports_each_of_its_keys() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/batch"));
            then.status(503)
                .header("content-type", "text/html")
                .body("<html>upstream unavailable</html>");
        })
        .await;
    let entries = (0..3).map(|i| BulkEntry::new(numbered_key(i), "v"));
    let report = fastly_client(&server)
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (0, 3));
    assert!(
        report
            .failed
            .iter()
            .all(|f| f.reason.contains("503") && f.reason.contains("upstream unavailable")),
        "{:?}",
        report.failed
    );
}
