//! Bulk calls read fallible streams: the caller's error (or a listing's) stops the reading, what
//! was read before is still sent, and the call ends with that error carrying the report of what
//! was done. Nothing read is left unaccounted for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgekv::emulator::Emulator;
use edgekv::{Error, cloudflare, fastly};
use futures_util::StreamExt as _;
use httpmock::MockServer;
use serde_json::json;

use crate::support::{exact, fastly_client, fastly_concurrency, fastly_path};

/// Five items, then the caller's own error, then one more that must never be read; and how
/// many were read.
fn five_then_an_error<T: Send + 'static>(
    item: impl Fn(usize) -> T + Send + 'static,
) -> (
    impl futures_util::Stream<Item = Result<T, Error>> + Send,
    Arc<AtomicUsize>,
) {
    let read = Arc::new(AtomicUsize::new(0));
    let counter = read.clone();
    let stream = futures_util::stream::iter(0..7).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        match i {
            5 => Err(Error::from_caller(std::io::Error::other("disk gone"))),
            i => Ok(item(i)),
        }
    });
    (stream, read)
}

/// The error a bulk call ended with: the caller's own, with what was done before it.
fn assert_stopped_by_the_source(error: &Error, done: impl Fn(&edgekv::BulkReport) -> u64) {
    assert!(matches!(error, Error::Caller(_)), "{error:?}");
    let cause = std::error::Error::source(error).unwrap().to_string();
    assert_eq!(cause, "disk gone");
    let report = error.partial_report().expect("the report so far");
    assert_eq!((done(report), report.failed.len()), (5, 0));
}

#[tokio::test]
async fn a_failing_entry_stream_ends_the_write_with_what_was_written_on_both_providers() {
    let emu = Emulator::new().await.unwrap();

    let namespace = emu.cloudflare_namespace().await.unwrap();
    let (entries, read) = five_then_an_error(|i| cloudflare::BulkEntry::text(format!("k{i}"), "v"));
    let options = cloudflare::BulkOptions::default();
    let error = namespace
        .bulk_write_stream(entries, &options)
        .await
        .unwrap_err();
    assert_stopped_by_the_source(&error, |r| r.written);
    assert_eq!(
        read.load(Ordering::SeqCst),
        6,
        "nothing is read after the error"
    );
    assert!(namespace.get("k4").await.unwrap().is_some(), "written");

    let store = emu.fastly_store().await.unwrap();
    let (entries, read) = five_then_an_error(|i| fastly::BulkEntry::new(format!("k{i}"), "v"));
    let error = store
        .bulk_write_stream(entries, &fastly::BulkOptions::default())
        .await
        .unwrap_err();
    assert_stopped_by_the_source(&error, |r| r.written);
    assert_eq!(
        read.load(Ordering::SeqCst),
        6,
        "nothing is read after the error"
    );
    assert!(store.get("k4").await.unwrap().is_some(), "written");
}

#[tokio::test]
async fn a_failing_key_stream_ends_the_delete_with_what_was_deleted_on_both_providers() {
    let emu = Emulator::new().await.unwrap();
    let seeded = || (0..7).map(|i| (format!("k{i}"), "v"));

    let namespace = emu.cloudflare_namespace().await.unwrap();
    emu.seed_cloudflare(namespace.id(), seeded()).unwrap();
    let (keys, _) = five_then_an_error(|i| format!("k{i}"));
    let error = namespace
        .bulk_delete_stream(keys, &cloudflare::BulkOptions::default())
        .await
        .unwrap_err();
    assert_stopped_by_the_source(&error, |r| r.deleted);
    assert!(namespace.get("k4").await.unwrap().is_none(), "deleted");
    assert!(namespace.get("k6").await.unwrap().is_some(), "never read");

    let store = emu.fastly_store().await.unwrap();
    emu.seed_fastly(store.id(), seeded()).unwrap();
    let (keys, _) = five_then_an_error(|i| format!("k{i}"));
    let error = store
        .bulk_delete_stream(keys, &fastly_concurrency(2))
        .await
        .unwrap_err();
    assert_stopped_by_the_source(&error, |r| r.deleted);
    assert!(store.get("k4").await.unwrap().is_none(), "deleted");
    assert!(store.get("k6").await.unwrap().is_some(), "never read");
}

/// Fastly's bulk delete sends `force`, so a missing key counts as deleted; whether the store
/// exists it asks once, first, so a missing store is an error and nothing is deleted (what
/// Fastly answers a forced delete in a missing store is not on record).
#[tokio::test]
async fn a_fastly_bulk_delete_counts_missing_keys_and_refuses_a_missing_store() {
    let emu = Emulator::new().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    emu.seed_fastly(store.id(), [("there", "v")]).unwrap();
    let report = store
        .bulk_delete(["there", "never-was"], &fastly_concurrency(2))
        .await
        .unwrap();
    assert_eq!((report.deleted, report.failed.len()), (2, 0));

    emu.clear_requests();
    let gone = emu.fastly().store("no-such-store");
    let error = gone
        .bulk_delete(["a", "b"], &fastly_concurrency(2))
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    let sent: Vec<_> = emu
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        sent,
        [(
            "GET".to_string(),
            "/resources/stores/kv/no-such-store".to_string()
        )],
        "only the store was asked for"
    );
}

/// A listing that fails half-way ends `delete_prefix` with its error, and the error's report
/// counts the keys of the pages read before, each deleted.
#[tokio::test]
async fn a_listing_that_fails_half_way_keeps_the_deletes_made_before() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys?prefix=s%2F"));
            then.status(200).json_body(json!({
                "data": ["s/1", "s/2"],
                "meta": {"limit": 1000, "next_cursor": "c2"}
            }));
        })
        .await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys?cursor=c2&prefix=s%2F"));
            then.status(400).body("bad cursor");
        })
        .await;
    let deletes = server
        .mock_async(|when, then| {
            when.method("DELETE")
                .path_prefix(fastly_path("/keys/s%2F"))
                .query_param("force", "true");
            then.status(204);
        })
        .await;
    let error = fastly_client(&server)
        .store(crate::support::FASTLY_STORE)
        .delete_prefix("s/", &fastly_concurrency(1))
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400), "{error:?}");
    let report = error.partial_report().expect("the deletes made before");
    assert_eq!((report.deleted, report.failed.len()), (2, 0));
    assert_eq!(deletes.calls_async().await, 2);
}

/// The same on Cloudflare: a listing that fails on its second page ends `delete_prefix` with
/// its error, carrying the count of the first page's keys, deleted in one bulk delete.
#[tokio::test]
async fn a_cloudflare_listing_that_fails_half_way_keeps_the_deletes_made_before() {
    use crate::support::envelope::{cf_failure, cf_ok, cf_page};
    use crate::support::{CF_NAMESPACE, cf_path, cloudflare_client};

    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?prefix=s%2F"));
            then.status(200).json_body(cf_page(
                json!([{"name": "s/1"}, {"name": "s/2"}]),
                json!({"count": 2, "cursor": "c2"}),
            ));
        })
        .await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?cursor=c2&prefix=s%2F"));
            then.status(400).json_body(cf_failure(10001, "bad cursor"));
        })
        .await;
    let deletes = server
        .mock_async(|when, then| {
            when.method("POST").path(cf_path("/bulk/delete"));
            then.status(200).json_body(cf_ok(
                json!({"successful_key_count": 2, "unsuccessful_keys": []}),
            ));
        })
        .await;
    let error = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .delete_prefix("s/", &cloudflare::BulkOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(400), "{error:?}");
    let report = error.partial_report().expect("the deletes made before");
    assert_eq!((report.deleted, report.failed.len()), (2, 0));
    assert_eq!(deletes.calls_async().await, 1);
}
