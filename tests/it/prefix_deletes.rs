//! Clearing a store or namespace, or deleting by prefix, streams: deletes go out while the
//! listing is still being read, so the keys are never all held (the emulator's request log
//! shows the order), and every key is counted as deleted.

use crate::support::fastly_concurrency as concurrency;
use edgekv::emulator::Emulator;

const KEYS: usize = 25_000;

/// The positions in the log of the first delete and of the last listing request.
fn first_delete_and_last_listing(
    log: &[edgekv::emulator::RecordedRequest],
    is_delete: impl Fn(&edgekv::emulator::RecordedRequest) -> bool,
    is_listing: impl Fn(&edgekv::emulator::RecordedRequest) -> bool,
) -> (usize, usize) {
    let first_delete = log.iter().position(&is_delete).expect("a delete");
    let last_listing = log.iter().rposition(&is_listing).expect("a listing");
    (first_delete, last_listing)
}

#[tokio::test]
async fn a_cloudflare_clear_of_25000_keys_deletes_while_it_lists() {
    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    let keys = (0..KEYS).map(|i| (format!("k/{i:05}"), "v"));
    emu.seed_cloudflare(namespace.id(), keys).unwrap();
    emu.seed_cloudflare(namespace.id(), [("other", "stays")])
        .unwrap();
    emu.clear_requests();

    let options = edgekv::cloudflare::BulkOptions::default().concurrency(1);
    let report = namespace.delete_prefix("k/", &options).await.unwrap();
    assert_eq!(
        (report.deleted, report.written, report.failed.len()),
        (KEYS as u64, 0, 0)
    );

    let log = emu.requests();
    let (first_delete, last_listing) = first_delete_and_last_listing(
        &log,
        |r| r.path.ends_with("/bulk/delete") || (r.method == "DELETE" && r.path.ends_with("/bulk")),
        |r| r.method == "GET" && r.path.ends_with("/keys"),
    );
    assert!(
        first_delete < last_listing,
        "the first delete went out after the listing ended ({first_delete} vs {last_listing})"
    );
    assert!(namespace.get("k/00000").await.unwrap().is_none());
    assert!(
        namespace.get("other").await.unwrap().is_some(),
        "outside the prefix"
    );

    let report = namespace.clear(&options).await.unwrap();
    assert_eq!(report.deleted, 1);
}

#[tokio::test]
async fn a_fastly_clear_of_25000_keys_deletes_while_it_lists() {
    let emu = Emulator::new().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    let keys = (0..KEYS).map(|i| (format!("k/{i:05}"), "v"));
    emu.seed_fastly(store.id(), keys).unwrap();
    emu.seed_fastly(store.id(), [("other", "stays")]).unwrap();
    emu.clear_requests();

    let report = store.delete_prefix("k/", &concurrency(16)).await.unwrap();
    assert_eq!(
        (report.deleted, report.written, report.failed.len()),
        (KEYS as u64, 0, 0)
    );

    let log = emu.requests();
    let (first_delete, last_listing) = first_delete_and_last_listing(
        &log,
        |r| r.method == "DELETE",
        |r| r.method == "GET" && r.path.ends_with("/keys"),
    );
    assert!(
        first_delete < last_listing,
        "the first delete went out after the listing ended ({first_delete} vs {last_listing})"
    );
    assert!(store.get("k/00000").await.unwrap().is_none());
    assert!(
        store.get("other").await.unwrap().is_some(),
        "outside the prefix"
    );

    let report = store.clear(&concurrency(4)).await.unwrap();
    assert_eq!(report.deleted, 1);
}
