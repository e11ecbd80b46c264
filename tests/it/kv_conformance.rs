//! One conformance suite for [`KvStore`]: every behaviour is written once and run on four
//! targets, each its own test so a failure names it: `MemoryStore` with Cloudflare's and with
//! Fastly's capabilities, and the real `cloudflare::Namespace` and `fastly::Store` against the
//! in-process emulator. Where the providers differ, a behaviour branches on the store's
//! [`Capabilities`], never on which target it runs on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use edgekv::Error;
use edgekv::emulator::Emulator;
use edgekv::error::InvalidInput;
use edgekv::kv::{
    BulkItem, Capabilities, Expiry, KvStore, ListPage, MemoryStore, Metadata, MetadataKind, Write,
};

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// What moves a target's clock (and, for the emulator, keeps it serving).
enum Clock {
    Memory(Arc<MemoryStore>),
    Emulator(Emulator),
}

/// A store under test, with its clock.
struct Target {
    store: Arc<dyn KvStore>,
    clock: Clock,
}

impl Target {
    fn memory(capabilities: Capabilities) -> Target {
        let memory = Arc::new(MemoryStore::new(capabilities));
        Target {
            store: memory.clone(),
            clock: Clock::Memory(memory),
        }
    }

    async fn memory_cloudflare() -> Target {
        Target::memory(Capabilities::cloudflare())
    }

    async fn memory_fastly() -> Target {
        Target::memory(Capabilities::fastly())
    }

    async fn emulator_cloudflare() -> Target {
        let emu = Emulator::new().await.expect("emulator starts");
        let namespace = emu.cloudflare_namespace().await.expect("namespace created");
        Target {
            store: Arc::new(namespace),
            clock: Clock::Emulator(emu),
        }
    }

    async fn emulator_fastly() -> Target {
        let emu = Emulator::new().await.expect("emulator starts");
        let store = emu.fastly_store().await.expect("store created");
        Target {
            store: Arc::new(store),
            clock: Clock::Emulator(emu),
        }
    }

    fn capabilities(&self) -> &Capabilities {
        self.store.capabilities()
    }

    /// Moves the target's clock forward by `by`.
    fn advance(&self, by: Duration) {
        match &self.clock {
            Clock::Memory(memory) => memory.advance(by),
            Clock::Emulator(emu) => emu.advance(by),
        }
    }

    /// The target's now, in UNIX seconds.
    fn now(&self) -> i64 {
        match &self.clock {
            Clock::Memory(memory) => memory.now(),
            Clock::Emulator(emu) => emu.now(),
        }
    }

    /// How many requests the target has served (`None` for one that sends none).
    fn requests_served(&self) -> Option<usize> {
        match &self.clock {
            Clock::Memory(_) => None,
            Clock::Emulator(emu) => Some(emu.requests().len()),
        }
    }
}

/// Runs each behaviour on the four targets, as four tests in a module named after it.
macro_rules! on_all_targets {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            use super::Target;

            #[tokio::test]
            async fn memory_cloudflare() {
                super::$behaviour(Target::memory_cloudflare().await).await;
            }

            #[tokio::test]
            async fn memory_fastly() {
                super::$behaviour(Target::memory_fastly().await).await;
            }

            #[tokio::test]
            async fn emulator_cloudflare() {
                super::$behaviour(Target::emulator_cloudflare().await).await;
            }

            #[tokio::test]
            async fn emulator_fastly() {
                super::$behaviour(Target::emulator_fastly().await).await;
            }
        }
    )*};
}

on_all_targets!(
    binary_values_round_trip_and_deletes_are_idempotent,
    metadata_of_the_stores_kind_round_trips_and_the_other_kind_is_refused,
    expiry_follows_the_targets_clock_and_a_short_ttl_is_refused,
    conditional_writes_hold_or_are_refused,
    key_rules_are_enforced_before_any_request,
    listing_by_prefix_gives_every_key_once_and_resumes_from_a_cursor,
    bulk_calls_account_for_every_key,
    a_failing_entry_stream_ends_bulk_put_with_a_partial_report,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every byte value once: not UTF-8.
fn binary_value() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Metadata of the kind `capabilities` keeps; `n` tells values apart.
fn own_metadata(capabilities: &Capabilities, n: u32) -> Metadata {
    match capabilities.metadata {
        MetadataKind::Text => Metadata::Text(format!("owner=ada; n={n}")),
        MetadataKind::Json => Metadata::Json(json!({ "owner": "ada", "n": n })),
        other => panic!("a metadata kind this suite does not know: {other:?}"),
    }
}

/// Metadata of the kind `capabilities` does not keep.
fn foreign_metadata(capabilities: &Capabilities) -> Metadata {
    match capabilities.metadata {
        MetadataKind::Text => Metadata::Json(json!({ "owner": "ada" })),
        MetadataKind::Json => Metadata::Text("owner=ada".into()),
        other => panic!("a metadata kind this suite does not know: {other:?}"),
    }
}

/// The value under `key`, read whole; `None` if there is none.
async fn value_of(store: &dyn KvStore, key: &str) -> Option<Vec<u8>> {
    let entry = store.get(key).await.expect("get")?;
    Some(entry.value.bytes().await.expect("value read").to_vec())
}

/// Runs `call`, which the target must refuse as invalid input without sending a request, and
/// gives the refusal.
async fn refused_unsent<T: std::fmt::Debug>(
    target: &Target,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> InvalidInput {
    let before = target.requests_served();
    let outcome = call.await;
    assert_eq!(
        target.requests_served(),
        before,
        "a refused call sent a request"
    );
    match outcome {
        Err(Error::InvalidInput(invalid)) => invalid,
        other => panic!("expected an InvalidInput refusal, got {other:?}"),
    }
}

/// Asserts a write failed because its condition did not hold.
fn assert_precondition_failed(outcome: Result<(), Error>) {
    match outcome {
        Err(error) => assert!(error.is_precondition_failed(), "{error:?}"),
        Ok(()) => panic!("a write whose condition does not hold succeeded"),
    }
}

/// Asserts `actual` is within `slack` seconds of `expected`.
fn assert_near(actual: i64, expected: i64, slack: i64) {
    assert!(
        (actual - expected).abs() <= slack,
        "{actual} is not within {slack} s of {expected}"
    );
}

/// Every page of a listing of `prefix` from `cursor`.
async fn pages(store: &dyn KvStore, prefix: &str, cursor: Option<String>) -> Vec<ListPage> {
    store
        .list(prefix, cursor)
        .try_collect()
        .await
        .expect("listing")
}

/// The keys of `pages`, in the order listed.
fn keys_of(pages: &[ListPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|page| page.keys.iter().map(|listed| listed.key.clone()))
        .collect()
}

/// `keys` as a set, asserting none came twice.
fn distinct(keys: &[String]) -> BTreeSet<String> {
    let set: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(set.len(), keys.len(), "a key was listed twice");
    set
}

/// A stream of bulk entries, as `bulk_put` takes them.
fn entries<'a>(
    items: Vec<Result<BulkItem, Error>>,
) -> futures_util::stream::BoxStream<'a, Result<BulkItem, Error>> {
    futures_util::stream::iter(items).boxed()
}

/// A stream of keys, as `bulk_delete` takes them.
fn key_stream<'a>(keys: &[&str]) -> futures_util::stream::BoxStream<'a, Result<String, Error>> {
    let keys: Vec<Result<String, Error>> = keys.iter().map(|k| Ok(k.to_string())).collect();
    futures_util::stream::iter(keys).boxed()
}

// ---------------------------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------------------------

/// A value of every byte (not UTF-8) reads back byte-exact, with no metadata, no expiry, and a
/// version exactly where the store keeps them; a missing key reads as `None`; a deleted key
/// reads as `None`; deleting a key that is not there succeeds.
async fn binary_values_round_trip_and_deletes_are_idempotent(target: Target) {
    let store = target.store.as_ref();
    let value = binary_value();
    store
        .put("bin", value.clone().into(), Write::new())
        .await
        .unwrap();

    let entry = store.get("bin").await.unwrap().expect("written");
    let metadata = entry.metadata;
    assert_eq!(entry.expires_at, None);
    assert_eq!(entry.version.is_some(), target.capabilities().versions);
    assert_eq!(entry.value.bytes().await.unwrap().as_ref(), &value[..]);

    assert!(store.get("missing").await.unwrap().is_none());
    store.delete("bin").await.unwrap();
    assert!(store.get("bin").await.unwrap().is_none());
    store.delete("bin").await.unwrap();
    store.delete("never-written").await.unwrap();

    // Cloudflare's metadata endpoint answers `null` for a key without metadata: `None` here, as
    // in the listing and the bulk read.
    assert_eq!(metadata, None, "a value written without metadata");
}

/// Metadata of the store's kind (text on Fastly, JSON on Cloudflare) reads back equal;
/// metadata of the other kind is refused as unsupported before any request, and nothing is
/// written.
async fn metadata_of_the_stores_kind_round_trips_and_the_other_kind_is_refused(target: Target) {
    let store = target.store.as_ref();
    let capabilities = target.capabilities().clone();
    let metadata = own_metadata(&capabilities, 1);
    let write = Write::new().metadata(metadata.clone());
    store.put("meta", "v".into(), write).await.unwrap();
    let entry = store.get("meta").await.unwrap().expect("written");
    assert_eq!(entry.metadata, Some(metadata));
    assert_eq!(entry.value.bytes().await.unwrap(), "v");

    let write = Write::new().metadata(foreign_metadata(&capabilities));
    let refused = refused_unsent(&target, store.put("other", "v".into(), write)).await;
    assert!(
        matches!(refused, InvalidInput::Unsupported { .. }),
        "{refused:?}"
    );
    assert!(store.get("other").await.unwrap().is_none());
}

/// An entry written to expire after 120 s is there, reads its expiry (now + 120) where the
/// store gives it and none where it does not, is still there 100 s on and gone 121 s on, by
/// the target's clock. A time to live under the store's minimum is refused before any request.
async fn expiry_follows_the_targets_clock_and_a_short_ttl_is_refused(target: Target) {
    let store = target.store.as_ref();
    let capabilities = target.capabilities().clone();
    let now = target.now();
    let write = Write::new().expiry(Expiry::After(Duration::from_secs(120)));
    store.put("ttl", "v".into(), write).await.unwrap();

    let entry = store.get("ttl").await.unwrap().expect("not expired yet");
    if capabilities.reads_expiry {
        let expires_at = entry.expires_at.expect("the store reads expiry");
        assert_near(expires_at, now + 120, 2);
    } else {
        assert_eq!(entry.expires_at, None);
    }
    target.advance(Duration::from_secs(100));
    assert_eq!(value_of(store, "ttl").await.as_deref(), Some(&b"v"[..]));
    target.advance(Duration::from_secs(21));
    assert!(store.get("ttl").await.unwrap().is_none(), "expired");

    let short = capabilities.min_ttl - Duration::from_secs(1);
    let write = Write::new().expiry(Expiry::After(short));
    let refused = refused_unsent(&target, store.put("short", "v".into(), write)).await;
    assert_eq!(
        refused,
        InvalidInput::ExpirationTtlTooShort {
            ttl: short.as_secs(),
            min: capabilities.min_ttl.as_secs(),
        }
    );
    assert!(store.get("short").await.unwrap().is_none());
}

/// Where the store has conditional writes, "if absent" fails on an existing key (leaving it)
/// and succeeds on a new one, "if version" succeeds with the version just read and fails with
/// a stale one, and versions rise. Where it has none, both conditions are refused as
/// unsupported before any request, and nothing changes.
async fn conditional_writes_hold_or_are_refused(target: Target) {
    let store = target.store.as_ref();
    store.put("c", "v1".into(), Write::new()).await.unwrap();

    if target.capabilities().conditional_writes {
        let taken = store.put("c", "v2".into(), Write::new().if_absent()).await;
        assert_precondition_failed(taken);
        assert_eq!(value_of(store, "c").await.as_deref(), Some(&b"v1"[..]));

        let fresh = store.put("new", "n".into(), Write::new().if_absent()).await;
        fresh.unwrap();
        assert_eq!(value_of(store, "new").await.as_deref(), Some(&b"n"[..]));

        let first = store.get("c").await.unwrap().expect("written");
        let v1 = first
            .version
            .expect("a store with conditional writes gives versions");
        let write = Write::new().if_version(v1);
        store.put("c", "v3".into(), write).await.unwrap();
        let second = store.get("c").await.unwrap().expect("written");
        let v2 = second.version.expect("a version");
        assert!(v2 > v1, "the version did not rise: {v1} then {v2}");
        assert_eq!(second.value.bytes().await.unwrap(), "v3");

        let stale = store
            .put("c", "v4".into(), Write::new().if_version(v1))
            .await;
        assert_precondition_failed(stale);
        assert_eq!(value_of(store, "c").await.as_deref(), Some(&b"v3"[..]));

        store.put("c", "v5".into(), Write::new()).await.unwrap();
        let third = store.get("c").await.unwrap().expect("written");
        assert!(third.version.expect("a version") > v2);
    } else {
        let write = Write::new().if_absent();
        let refused = refused_unsent(&target, store.put("new", "n".into(), write)).await;
        assert!(
            matches!(refused, InvalidInput::Unsupported { .. }),
            "{refused:?}"
        );
        assert!(store.get("new").await.unwrap().is_none());

        let write = Write::new().if_absent();
        let refused = refused_unsent(&target, store.put("c", "v2".into(), write)).await;
        assert!(
            matches!(refused, InvalidInput::Unsupported { .. }),
            "{refused:?}"
        );
        let write = Write::new().if_version(1);
        let refused = refused_unsent(&target, store.put("c", "v3".into(), write)).await;
        assert!(
            matches!(refused, InvalidInput::Unsupported { .. }),
            "{refused:?}"
        );
        assert_eq!(value_of(store, "c").await.as_deref(), Some(&b"v1"[..]));
    }
}

/// A key of exactly the store's maximum length is written, read and deleted; one byte longer
/// is refused before any request by put, get and delete; `.` and `..` are refused likewise; a
/// key with `/`, spaces, `%`, `?`, `#` and non-ASCII characters reads back and is listed back
/// exactly, also when it is the listing's prefix.
async fn key_rules_are_enforced_before_any_request(target: Target) {
    let store = target.store.as_ref();
    let max = target.capabilities().max_key_bytes;

    let longest = "k".repeat(max);
    store.put(&longest, "v".into(), Write::new()).await.unwrap();
    assert_eq!(value_of(store, &longest).await.as_deref(), Some(&b"v"[..]));
    store.delete(&longest).await.unwrap();
    assert!(store.get(&longest).await.unwrap().is_none());

    let too_long = "k".repeat(max + 1);
    let expected = InvalidInput::KeyTooLong { len: max + 1, max };
    let put = store.put(&too_long, "v".into(), Write::new());
    assert_eq!(refused_unsent(&target, put).await, expected);
    assert_eq!(
        refused_unsent(&target, store.get(&too_long)).await,
        expected
    );
    assert_eq!(
        refused_unsent(&target, store.delete(&too_long)).await,
        expected
    );

    for dots in [".", ".."] {
        let expected = InvalidInput::UnaddressableKey { len: dots.len() };
        let put = store.put(dots, "v".into(), Write::new());
        assert_eq!(refused_unsent(&target, put).await, expected, "{dots:?}");
        let get = store.get(dots);
        assert_eq!(refused_unsent(&target, get).await, expected, "{dots:?}");
    }

    let odd = "odd/a b/100%/?q=1&r#frag/ünï/日本語";
    store.put(odd, "odd".into(), Write::new()).await.unwrap();
    assert_eq!(value_of(store, odd).await.as_deref(), Some(&b"odd"[..]));
    assert_eq!(keys_of(&pages(store, "odd/", None).await), [odd]);
    assert_eq!(keys_of(&pages(store, odd, None).await), [odd]);
    assert_eq!(keys_of(&pages(store, "", None).await), [odd]);
}

/// Keys seeded under `p/` (2,500 of them, by `bulk_put`) are listed by prefix exactly, none
/// from outside it (`p`, `p.`, `p0/x`, ...), in key order where the store lists in order; every
/// page but the last carries a cursor; resuming from the first page's cursor gives exactly the
/// rest. Where the listing gives metadata and expiry, they are what was written.
async fn listing_by_prefix_gives_every_key_once_and_resumes_from_a_cursor(target: Target) {
    const KEYS: usize = 2_500;
    let store = target.store.as_ref();
    let capabilities = target.capabilities().clone();
    let expires_at = target.now() + 3_600;

    // Every 100th key has metadata and an expiry, the rest neither.
    let decorated = |i: usize| i % 100 == 7;
    let mut items: Vec<Result<BulkItem, Error>> = (0..KEYS)
        .map(|i| {
            let item = BulkItem::new(format!("p/{i:05}"), format!("value {i}"));
            Ok(if decorated(i) {
                item.metadata(own_metadata(&capabilities, i as u32))
                    .expiry(Expiry::At(expires_at))
            } else {
                item
            })
        })
        .collect();
    let outside = ["a", "p", "p.", "p0/x", "q/1", "P/1"];
    items.extend(outside.iter().map(|key| Ok(BulkItem::new(*key, "outside"))));
    let report = store.bulk_put(entries(items), 4).await.unwrap();
    assert_eq!(report.failed, []);
    assert_eq!(report.written, (KEYS + outside.len()) as u64);

    let expected: BTreeSet<String> = (0..KEYS).map(|i| format!("p/{i:05}")).collect();
    let all = pages(store, "p/", None).await;
    let listed = keys_of(&all);
    assert_eq!(distinct(&listed), expected);
    if capabilities.ordered_listing {
        let sorted: Vec<String> = expected.iter().cloned().collect();
        assert_eq!(listed, sorted, "not in key order");
    }

    assert!(all.len() >= 2, "2,500 keys came in one page");
    let (last, before_last) = all.split_last().expect("pages");
    assert!(before_last.iter().all(|page| page.cursor.is_some()));
    assert_eq!(last.cursor, None);

    let first = &all[0];
    let rest = pages(store, "p/", first.cursor.clone()).await;
    let resumed = keys_of(&rest);
    let first_keys = distinct(&keys_of(std::slice::from_ref(first)));
    let resumed_keys = distinct(&resumed);
    assert!(first_keys.is_disjoint(&resumed_keys), "a key came twice");
    let together: BTreeSet<String> = first_keys.union(&resumed_keys).cloned().collect();
    assert_eq!(together, expected, "a key was lost");

    for listed in all.iter().flat_map(|page| &page.keys) {
        let i: usize = listed.key["p/".len()..].parse().expect("a seeded key");
        if capabilities.lists_metadata && decorated(i) {
            let metadata = own_metadata(&capabilities, i as u32);
            assert_eq!(listed.metadata.as_ref(), Some(&metadata), "{}", listed.key);
            assert_eq!(listed.expires_at, Some(expires_at), "{}", listed.key);
        } else {
            assert_eq!(listed.metadata, None, "{}", listed.key);
            assert_eq!(listed.expires_at, None, "{}", listed.key);
        }
    }
}

/// `bulk_put` names exactly the refused entries (metadata of the other kind, an over-long key)
/// under their indexes and counts the rest as written; `bulk_get` gives present, missing and
/// repeated keys in the order asked, byte-exact and with their metadata; `bulk_delete` counts
/// every key, written or never written, as deleted.
async fn bulk_calls_account_for_every_key(target: Target) {
    let store = target.store.as_ref();
    let capabilities = target.capabilities().clone();
    let binary = binary_value();
    let too_long = "b".repeat(capabilities.max_key_bytes + 1);
    let items = vec![
        Ok(BulkItem::new("b/bin", binary.clone()).metadata(own_metadata(&capabilities, 1))),
        Ok(BulkItem::new("b/text", "hello").metadata(own_metadata(&capabilities, 2))),
        Ok(BulkItem::new("b/foreign", "x").metadata(foreign_metadata(&capabilities))),
        Ok(BulkItem::new("b/plain", "plain")),
        Ok(BulkItem::new(too_long.clone(), "x")),
    ];
    let report = store.bulk_put(entries(items), 2).await.unwrap();
    let mut failed: Vec<(String, u64)> = report
        .failed
        .iter()
        .map(|f| (f.key.clone(), f.index))
        .collect();
    failed.sort_by_key(|(_, index)| *index);
    assert_eq!(failed, [("b/foreign".to_string(), 2), (too_long, 4)]);
    assert_eq!((report.written, report.deleted), (3, 0));
    assert!(store.get("b/foreign").await.unwrap().is_none());

    let asked = ["b/bin", "b/missing", "b/text", "b/bin"].map(String::from);
    let records = store.bulk_get(asked.to_vec()).await.unwrap();
    let keys: Vec<&str> = records.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, asked);
    let expected = [
        Some((&binary[..], own_metadata(&capabilities, 1))),
        None,
        Some((&b"hello"[..], own_metadata(&capabilities, 2))),
        Some((&binary[..], own_metadata(&capabilities, 1))),
    ];
    for ((key, record), expected) in records.iter().zip(expected) {
        match (record, expected) {
            (None, None) => {}
            (Some(record), Some((value, metadata))) => {
                assert_eq!(record.value.as_ref(), value, "{key}");
                assert_eq!(record.metadata.as_ref(), Some(&metadata), "{key}");
                assert_eq!(record.expires_at, None, "{key}");
            }
            (record, expected) => panic!("{key}: got {record:?}, expected {expected:?}"),
        }
    }

    let doomed = ["b/bin", "b/text", "b/plain", "b/never-written"];
    let report = store.bulk_delete(key_stream(&doomed), 2).await.unwrap();
    assert_eq!(report.failed, []);
    assert_eq!((report.deleted, report.written), (4, 0));
    let gone = store
        .bulk_get(doomed.map(String::from).to_vec())
        .await
        .unwrap();
    assert!(gone.iter().all(|(_, record)| record.is_none()), "{gone:?}");
}

/// An entry stream that fails after three entries ends `bulk_put` with that error, whose
/// partial report counts the three, which were written; the entry after the error is not.
async fn a_failing_entry_stream_ends_bulk_put_with_a_partial_report(target: Target) {
    let store = target.store.as_ref();
    let items = vec![
        Ok(BulkItem::new("s/0", "0")),
        Ok(BulkItem::new("s/1", "1")),
        Ok(BulkItem::new("s/2", "2")),
        Err(Error::from_caller("the source broke")),
        Ok(BulkItem::new("s/4", "4")),
    ];
    let error = store.bulk_put(entries(items), 1).await.unwrap_err();
    assert!(matches!(error, Error::Caller(_)), "{error:?}");
    let partial = error.partial_report().expect("a partial report");
    assert_eq!(partial.failed, []);
    assert_eq!((partial.written, partial.deleted), (3, 0));
    for key in ["s/0", "s/1", "s/2"] {
        assert!(store.get(key).await.unwrap().is_some(), "{key} not written");
    }
    assert!(
        store.get("s/4").await.unwrap().is_none(),
        "read past the error"
    );
}
