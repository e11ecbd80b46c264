//! The emulator: what a caller observes through the facades, every operation's answer decoded
//! through the generated types, and the standalone binary.

use crate::support::fastly_concurrency as concurrency;
use edgekv::cloudflare::raw as cf_raw;
use edgekv::emulator::{DEFAULT_ACCOUNT, DEFAULT_TOKEN, Emulator, EmulatorConfig, Faults};
use edgekv::fastly::raw as fastly_raw;
use edgekv::policy::RequestPolicy;
use edgekv::transport::{Credential, Transport};
use edgekv::{cloudflare, fastly};
use futures_util::TryStreamExt as _;
use serde_json::json;

use crate::support::backend::{emulator_cloudflare, emulator_fastly};
use crate::support::fast_policy;

async fn start() -> (Emulator, fastly::Client, cloudflare::Client) {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let fastly = emulator_fastly(&emulator.fastly_url(), fast_policy());
    let cloudflare = emulator_cloudflare(&emulator.cloudflare_url(), fast_policy());
    (emulator, fastly, cloudflare)
}

#[tokio::test]
async fn fastly_items_round_trip_with_generations_modes_and_conflicts() {
    let (_emulator, client, _) = start().await;
    let store = client.store(client.create_store("s", None).await.unwrap().id);
    store
        .put("a b/c", "apple0", fastly::PutOptions::new().metadata("m"))
        .await
        .unwrap();
    let item = store.get("a b/c").await.unwrap().unwrap();
    let (generation, metadata) = (item.generation(), item.metadata().map(str::to_string));
    assert!(
        generation > u64::from(u32::MAX),
        "generations come from a microsecond clock"
    );
    assert_eq!(metadata.as_deref(), Some("m"));
    assert_eq!(item.bytes().await.unwrap(), "apple0");

    store
        .put(
            "a b/c",
            "prefix-",
            fastly::PutOptions::new().mode(fastly::WriteMode::Prepend),
        )
        .await
        .unwrap();
    store
        .put(
            "a b/c",
            "-suffix",
            fastly::PutOptions::new().mode(fastly::WriteMode::Append),
        )
        .await
        .unwrap();
    let item = store.get("a b/c").await.unwrap().unwrap();
    assert!(item.generation() > generation);
    assert_eq!(item.metadata(), None, "a write without metadata clears it");
    assert_eq!(item.bytes().await.unwrap(), "prefix-apple0-suffix");

    let stale = store
        .put(
            "a b/c",
            "x",
            fastly::PutOptions::new().if_generation_match(generation),
        )
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed());
    let exists = store
        .put(
            "a b/c",
            "x",
            fastly::PutOptions::new().mode(fastly::WriteMode::Add),
        )
        .await
        .unwrap_err();
    assert!(exists.is_precondition_failed());
    store
        .put(
            "fresh",
            "x",
            fastly::PutOptions::new().mode(fastly::WriteMode::Add),
        )
        .await
        .unwrap();

    assert!(store.get("missing").await.unwrap().is_none());
    let full = client.delete_store(store.id()).await.unwrap_err();
    assert!(full.is_conflict());
    store
        .delete("missing", fastly::DeleteOptions::new())
        .await
        .unwrap();
    assert!(
        store
            .delete("missing", fastly::DeleteOptions::new().force(false))
            .await
            .unwrap_err()
            .is_not_found()
    );
    let report = client
        .delete_store_with_contents(store.id(), &concurrency(4))
        .await
        .unwrap();
    assert_eq!((report.deleted, report.failed.len()), (2, 0));
    assert!(
        client
            .get_store(store.id())
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn fastly_listings_and_batch_reports() {
    let (_emulator, client, _) = start().await;
    for name in ["one", "two", "three"] {
        client
            .create_store(name, Some(fastly::Location::Eu))
            .await
            .unwrap();
    }
    let mut options = fastly::ListStores::default();
    options.limit = Some(2);
    let stores: Vec<_> = client.stores(options).try_collect().await.unwrap();
    assert_eq!(stores.len(), 3);
    let store = client.store(&stores[0].id);

    let mut entries: Vec<_> = (0..2_345)
        .map(|i| fastly::BulkEntry::new(format!("k/{i:05}"), vec![0u8, 1, 2]))
        .collect();
    entries.push(fastly::BulkEntry::new("bad\u{1}key", "v"));
    let mut batch = fastly::BulkOptions::default();
    batch.max_request_bytes = 16 * 1024;
    let report = store.bulk_write(entries, &batch).await.unwrap();
    assert_eq!(
        (report.written, report.failed.len(), report.submitted()),
        (2_345, 1, 2_346)
    );
    assert_eq!(report.failed[0].index, 2_345);

    let pages: Vec<_> = store
        .key_pages(fastly::ListKeys::new().prefix("k/").limit(1_000))
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.keys.len()).collect();
    assert_eq!(sizes, [1_000, 1_000, 345]);
    assert!(pages[0].cursor.is_some() && pages[2].cursor.is_none());
    assert_eq!(
        store
            .get("k/00007")
            .await
            .unwrap()
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        vec![0u8, 1, 2]
    );
}

#[tokio::test]
async fn cloudflare_values_round_trip_with_metadata_expiration_and_encoding() {
    let (emulator, _, client) = start().await;
    let info = client.create_namespace("ns").await.unwrap();
    assert_eq!(info.supports_url_encoding, Some(true));
    assert_eq!(
        client.create_namespace("ns").await.unwrap_err().codes(),
        [10014]
    );
    let namespace = client.namespace(&info.id);
    for key in ["a/b", "a?b", "a#b", "100%", "ключ", "a b"] {
        let options = cloudflare::PutOptions::new()
            .expiration_ttl(120)
            .metadata(json!({"key": key}));
        namespace.put(key, key.to_string(), options).await.unwrap();
        let value = namespace.get(key).await.unwrap().unwrap();
        assert!(value.expiration().unwrap() > 0);
        assert_eq!(value.bytes().await.unwrap(), key);
        assert_eq!(
            namespace.metadata(key).await.unwrap(),
            Some(json!({"key": key}))
        );
    }
    let keys: Vec<_> = namespace
        .keys(cloudflare::ListKeys::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys.len(), 6);
    assert!(
        keys.iter()
            .all(|k| k.expiration.is_some() && k.metadata.is_some())
    );
    assert!(namespace.get("missing").await.unwrap().is_none());

    // The facade refuses a TTL under 60 before sending; the emulator refuses it too.
    let raw = cf_raw::Client::new(
        &emulator.cloudflare_url(),
        Transport::new(Credential::CloudflareToken(DEFAULT_TOKEN.into())).unwrap(),
    );
    match raw
        .value_put(DEFAULT_ACCOUNT, &info.id, "ttl", None, Some(59), "v")
        .await
    {
        Err(cf_raw::Error::ErrorResponse(failure)) => {
            assert_eq!(failure.into_inner().errors[0].code, 10020)
        }
        other => panic!(
            "the emulator accepted a TTL of 59: {:?}",
            other.map(|r| r.status())
        ),
    }

    namespace.delete("a/b").await.unwrap();
    assert!(namespace.get("a/b").await.unwrap().is_none());
    client.delete_namespace(&info.id).await.unwrap();
    assert_eq!(
        client
            .namespace(&info.id)
            .get("k")
            .await
            .unwrap_err()
            .codes(),
        [10013]
    );
}

#[tokio::test]
async fn cloudflare_listings_and_bulk_reports() {
    let (_emulator, _, client) = start().await;
    for i in 0..12 {
        client.create_namespace(format!("ns-{i:02}")).await.unwrap();
    }
    let namespaces: Vec<_> = client.namespaces(Some(5)).try_collect().await.unwrap();
    assert_eq!(namespaces.len(), 12);
    let namespace = client.namespace(&namespaces[0].id);

    let mut entries: Vec<_> = (0..2_345)
        .map(|i| cloudflare::BulkEntry::text(format!("k/{i:05}"), format!("{i}")))
        .collect();
    entries.push(cloudflare::BulkEntry::bytes("bin", vec![0u8, 255]));
    entries.push(cloudflare::BulkEntry::text(
        "k".repeat(600),
        "too long a key",
    ));
    let mut bulk = cloudflare::BulkOptions::default();
    bulk.max_request_bytes = 32 * 1024;
    let report = namespace.bulk_write(entries, &bulk).await.unwrap();
    assert_eq!(
        (report.written, report.failed.len(), report.submitted()),
        (2_346, 1, 2_347)
    );
    assert_eq!(report.failed[0].index, 2_346);
    assert_eq!(
        namespace
            .get("bin")
            .await
            .unwrap()
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        vec![0u8, 255]
    );

    let pages: Vec<_> = namespace
        .key_pages(cloudflare::ListKeys::new().prefix("k/").limit(1_000))
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.keys.len()).collect();
    assert_eq!(sizes, [1_000, 1_000, 345]);

    let values = namespace
        .bulk_get(
            (0..150).map(|i| format!("k/{i:05}")),
            cloudflare::BulkGetOptions {
                json: true,
                with_metadata: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(values.len(), 150);
    assert_eq!(values["k/00042"].as_ref().unwrap().value, json!(42));
    let deleted = namespace
        .bulk_delete((0..2_345).map(|i| format!("k/{i:05}")), &bulk)
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 2_345);
    let left: Vec<_> = namespace
        .keys(cloudflare::ListKeys::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
}

#[tokio::test]
async fn wrong_credentials_get_each_services_refusal() {
    let (emulator, _, _) = start().await;
    let fastly = fastly::Client::builder("wrong")
        .base_url(emulator.fastly_url())
        .build()
        .unwrap();
    assert_eq!(
        fastly
            .get_store("s")
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(401)
    );
    let cloudflare = cloudflare::Client::builder("wrong", DEFAULT_ACCOUNT)
        .base_url(emulator.cloudflare_url())
        .build()
        .unwrap();
    let error = cloudflare.create_namespace("x").await.unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.codes()),
        (Some(403), vec![10000])
    );
}

#[tokio::test]
async fn injected_faults_are_retried_by_the_clients() {
    let mut config = EmulatorConfig::default();
    let mut faults = Faults::default();
    (faults.server_errors, faults.seed) = (0.3, 7);
    config.faults = faults;
    let emulator = Emulator::start(config).await.unwrap();
    let mut policy = fast_policy();
    policy.retry.max_attempts = 10;
    // Faults are injected before a request is served, so even a create is safe to send again.
    policy.retry.retry_non_idempotent = true;
    let client = emulator_fastly(&emulator.fastly_url(), policy);
    let store = client.store(client.create_store("faulty", None).await.unwrap().id);
    for i in 0..20 {
        store
            .put(&format!("k{i}"), "v", fastly::PutOptions::new())
            .await
            .unwrap();
    }
    let keys: Vec<String> = store
        .keys(fastly::ListKeys::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys.len(), 20);
}

/// Every operation of both specs, called through the generated clients (which decode every
/// answer with the generated types), on its success path and on an error path: the emulator
/// cannot answer a shape the specs do not describe.
#[tokio::test]
async fn every_operation_answers_in_the_shapes_of_the_specs() {
    let (emulator, fastly_client, cloudflare_client) = start().await;
    let transport = |c: Credential| Transport::new(c).unwrap();
    let f = fastly_raw::Client::new(
        &emulator.fastly_url(),
        transport(Credential::FastlyToken(DEFAULT_TOKEN.into())),
    );
    let body = fastly_raw::types::KvStoreRequestCreateOrUpdate {
        name: "walk".into(),
    };
    let store = f
        .kv_store_create(Some(fastly_raw::types::KvStoreLocation::Us), &body)
        .await
        .unwrap()
        .into_inner();
    let id = store.id.unwrap();
    assert_eq!(
        f.kv_store_list(None, None, None)
            .await
            .unwrap()
            .into_inner()
            .data
            .len(),
        1
    );
    assert_eq!(
        f.kv_store_get(&id)
            .await
            .unwrap()
            .into_inner()
            .name
            .as_deref(),
        Some("walk")
    );
    f.kv_store_put(
        &id,
        &fastly_raw::types::KvStoreRequestCreateOrUpdate {
            name: "walked".into(),
        },
    )
    .await
    .unwrap();
    f.kv_store_upsert_item(
        &id,
        "k",
        None,
        None,
        None,
        None,
        None,
        Some("m"),
        Some(60),
        "v",
    )
    .await
    .unwrap();
    let item = f.kv_store_get_item(&id, "k").await.unwrap();
    assert!(
        item.headers()["generation"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    let keys = f
        .kv_store_list_item_keys(
            &id,
            Some(fastly_raw::types::KvStoreConsistency::Eventual),
            None,
            None,
            Some("k"),
        )
        .await
        .unwrap();
    assert_eq!(keys.into_inner().data, ["k"]);
    assert_eq!(
        f.kv_store_delete(&id)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(409)
    );
    f.kv_store_delete_item(&id, "k", None, None).await.unwrap();
    assert_eq!(
        f.kv_store_delete_item(&id, "k", None, None)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );
    assert_eq!(
        f.kv_store_upsert_item(&id, "k", None, None, None, None, Some(1), None, None, "v")
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(412)
    );
    let Err(gone) = f.kv_store_get_item(&id, "gone").await else {
        panic!("a missing item was found")
    };
    assert_eq!(gone.status().map(|s| s.as_u16()), Some(404));
    // The batch is hand-written; its answer decodes into the generated type.
    let report = fastly_client
        .store(&id)
        .bulk_write([fastly::BulkEntry::new("b", "v")], &Default::default())
        .await
        .unwrap();
    assert_eq!(report.written, 1);
    fastly_client
        .delete_store_with_contents(&id, &concurrency(2))
        .await
        .unwrap();
    assert_eq!(
        f.kv_store_get(&id)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );

    let c = cf_raw::Client::new(
        &emulator.cloudflare_url(),
        transport(Credential::CloudflareToken(DEFAULT_TOKEN.into())),
    );
    let title = |t: &str| cf_raw::types::NamespaceTitle { title: t.into() };
    let ns = c
        .namespace_create(DEFAULT_ACCOUNT, &title("walk"))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert!(matches!(
        c.namespace_create(DEFAULT_ACCOUNT, &title("walk")).await,
        Err(cf_raw::Error::ErrorResponse(_))
    ));
    assert_eq!(
        c.namespace_list(DEFAULT_ACCOUNT, None, None, None, None)
            .await
            .unwrap()
            .into_inner()
            .result
            .len(),
        1
    );
    assert_eq!(
        c.namespace_get(DEFAULT_ACCOUNT, &ns.id)
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
            .title,
        "walk"
    );
    assert_eq!(
        c.namespace_rename(DEFAULT_ACCOUNT, &ns.id, &title("walked"))
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
            .title,
        "walked"
    );
    c.value_put(DEFAULT_ACCOUNT, &ns.id, "k", None, Some(60), "v")
        .await
        .unwrap();
    let value = c.value_get(DEFAULT_ACCOUNT, &ns.id, "k").await.unwrap();
    assert!(value.headers().contains_key("expiration"));
    let Err(cf_raw::Error::ErrorResponse(_)) = c.value_get(DEFAULT_ACCOUNT, &ns.id, "gone").await
    else {
        panic!("a missing value was found, or its error did not decode")
    };
    assert_eq!(
        c.metadata_get(DEFAULT_ACCOUNT, &ns.id, "k")
            .await
            .unwrap()
            .into_inner()
            .result,
        None
    );
    assert!(matches!(
        c.metadata_get(DEFAULT_ACCOUNT, &ns.id, "gone").await,
        Err(cf_raw::Error::ErrorResponse(_))
    ));
    assert_eq!(
        c.keys_list(DEFAULT_ACCOUNT, &ns.id, None, Some(10), None)
            .await
            .unwrap()
            .into_inner()
            .result
            .len(),
        1
    );
    let write = cf_raw::types::BulkWrite(vec![cf_raw::types::BulkWriteItem {
        key: "b".into(),
        value: "dg==".into(),
        base64: Some(true),
        expiration: None,
        expiration_ttl: None,
        metadata: Some(json!({"m": 1})),
    }]);
    assert_eq!(
        c.bulk_write(DEFAULT_ACCOUNT, &ns.id, &write)
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
            .successful_key_count,
        Some(1)
    );
    let get = cf_raw::types::BulkGetRequest {
        keys: vec!["b".into(), "gone".into()],
        type_: None,
        with_metadata: Some(true),
    };
    assert!(matches!(
        c.bulk_get(DEFAULT_ACCOUNT, &ns.id, &get)
            .await
            .unwrap()
            .into_inner()
            .result,
        Some(cf_raw::types::BulkGetResult::WithMetadata(_))
    ));
    let get = cf_raw::types::BulkGetRequest {
        keys: vec!["b".into()],
        type_: None,
        with_metadata: None,
    };
    assert!(matches!(
        c.bulk_get(DEFAULT_ACCOUNT, &ns.id, &get)
            .await
            .unwrap()
            .into_inner()
            .result,
        Some(cf_raw::types::BulkGetResult::Values(_))
    ));
    let delete = cf_raw::types::BulkDelete(vec!["b".into()]);
    assert_eq!(
        c.bulk_delete(DEFAULT_ACCOUNT, &ns.id, &delete)
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
            .successful_key_count,
        Some(1)
    );
    // The multipart put is hand-written; its answer decodes into the generated envelope.
    let options = cloudflare::PutOptions::new().metadata(json!({"m": true}));
    cloudflare_client
        .namespace(&ns.id)
        .put("mp", "v", options)
        .await
        .unwrap();
    c.value_delete(DEFAULT_ACCOUNT, &ns.id, "k").await.unwrap();
    c.namespace_delete(DEFAULT_ACCOUNT, &ns.id).await.unwrap();
    assert!(matches!(
        c.namespace_get(DEFAULT_ACCOUNT, &ns.id).await,
        Err(cf_raw::Error::ErrorResponse(_))
    ));
    assert!(matches!(
        c.namespace_get("another-account", &ns.id).await,
        Err(cf_raw::Error::ErrorResponse(_))
    ));
}

#[test]
fn the_standalone_binary_serves_both_apis_and_stops_cleanly() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgekv-emulator"))
        .args(["--port", "0", "--token", "bin-token"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let fastly_url = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("fastly: ")
        .unwrap()
        .to_string();
    let cloudflare_url = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("cloudflare: ")
        .unwrap()
        .to_string();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fastly = fastly::Client::builder("bin-token")
            .base_url(&fastly_url)
            .build()
            .unwrap();
        let store = fastly.create_store("from-the-binary", None).await.unwrap();
        fastly
            .store(&store.id)
            .put("k", "v", fastly::PutOptions::new())
            .await
            .unwrap();
        let cloudflare = cloudflare::Client::builder("bin-token", DEFAULT_ACCOUNT)
            .base_url(&cloudflare_url)
            .build()
            .unwrap();
        cloudflare
            .create_namespace("from-the-binary")
            .await
            .unwrap();
    });

    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}

#[tokio::test]
async fn injected_429s_carry_retry_after_and_latency_is_added() {
    let mut config = EmulatorConfig::default();
    config.faults.rate_limited = 1.0;
    let emulator = Emulator::start(config).await.unwrap();
    let mut policy = fast_policy();
    policy.retry = edgekv::policy::RetryPolicy::disabled();
    let client = emulator_fastly(&emulator.fastly_url(), policy);
    let error = client.get_store("any").await.unwrap_err();
    assert!(error.is_rate_limited(), "{error:?}");
    assert_eq!(error.retry_after(), Some(std::time::Duration::from_secs(1)));

    let mut config = EmulatorConfig::default();
    config.faults.latency = std::time::Duration::from_millis(150);
    let slow = Emulator::start(config).await.unwrap();
    let client = emulator_fastly(&slow.fastly_url(), RequestPolicy::default());
    let started = std::time::Instant::now();
    client.create_store("slow", None).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}
