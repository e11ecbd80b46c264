//! What a caller observes — round trips, conditional writes, pagination, conflicts, bulk
//! reports — written once and run against httpmock (which checks every request's wire shape)
//! and against the emulator (which checks the semantics behind the same observations).

use edgekv::emulator::DEFAULT_ACCOUNT;
use edgekv::{cloudflare, fastly};
use futures_util::TryStreamExt as _;
use serde_json::json;

use crate::support::backend::Backend;
use crate::support::envelope::{cf_key_not_found, cf_ok, cf_page};

/// Runs a behaviour on both backends, as two tests.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            use super::*;
            #[tokio::test]
            async fn on_httpmock() {
                let backend = Backend::mock().await;
                super::$behaviour(&backend).await;
                backend.assert_all_used();
            }
            #[tokio::test]
            async fn on_the_emulator() {
                super::$behaviour(&Backend::emulator().await).await;
            }
        }
    )*};
}

on_both_backends!(
    fastly_items_round_trip_with_conditional_writes,
    fastly_keys_are_listed_page_by_page_and_a_full_store_resists_deletion,
    fastly_batch_reports_every_entry,
    cloudflare_values_round_trip_with_metadata_and_expiration,
    cloudflare_keys_are_listed_page_by_page_after_a_bulk_write,
    cloudflare_bulk_get_and_delete_report_by_key,
);

async fn fastly_items_round_trip_with_conditional_writes(backend: &Backend) {
    let client = backend.fastly();
    let id = backend.fastly_store(&client).await;
    let store = client.store(&id);
    let path = |rest: &str| format!("/resources/stores/kv/{id}{rest}");

    backend
        .expect("PUT", &path("/keys/apple"), 200, &[], "")
        .await;
    store
        .put("apple", "apple0", fastly::PutOptions::new())
        .await
        .unwrap();
    backend
        .expect(
            "GET",
            &path("/keys/apple"),
            200,
            &[("generation", "1750707676353461"), ("metadata", "")],
            "apple0",
        )
        .await;
    let item = store.get("apple").await.unwrap().unwrap();
    let generation = item.generation();
    assert_eq!(item.metadata(), None);
    assert_eq!(item.bytes().await.unwrap(), "apple0");

    backend
        .expect("PUT", &path("/keys/apple"), 412, &[], "")
        .await;
    let stale = store
        .put(
            "apple",
            "x",
            fastly::PutOptions::new().if_generation_match(generation - 1),
        )
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed());
    backend
        .expect("PUT", &path("/keys/apple"), 200, &[], "")
        .await;
    store
        .put(
            "apple",
            "apple1",
            fastly::PutOptions::new().if_generation_match(generation),
        )
        .await
        .unwrap();
    backend
        .expect("PUT", &path("/keys/apple?append=true"), 200, &[], "")
        .await;
    store
        .put(
            "apple",
            "+",
            fastly::PutOptions::new().mode(fastly::WriteMode::Append),
        )
        .await
        .unwrap();
    backend
        .expect("PUT", &path("/keys/apple?add=true"), 412, &[], "")
        .await;
    let exists = store
        .put(
            "apple",
            "x",
            fastly::PutOptions::new().mode(fastly::WriteMode::Add),
        )
        .await
        .unwrap_err();
    assert!(exists.is_precondition_failed());

    backend
        .expect(
            "GET",
            &path("/keys/apple"),
            200,
            &[("generation", "1750707676359999"), ("metadata", "")],
            "apple1+",
        )
        .await;
    let item = store.get("apple").await.unwrap().unwrap();
    assert!(item.generation() > generation);
    assert_eq!(item.bytes().await.unwrap(), "apple1+");
    backend
        .expect("GET", &path("/keys/pear"), 404, &[], "")
        .await;
    assert!(store.get("pear").await.unwrap().is_none());
}

async fn fastly_keys_are_listed_page_by_page_and_a_full_store_resists_deletion(backend: &Backend) {
    let client = backend.fastly();
    let id = backend.fastly_store(&client).await;
    let store = client.store(&id);
    let path = |rest: &str| format!("/resources/stores/kv/{id}{rest}");
    for key in ["k1", "k2", "k3", "k4", "k5"] {
        backend
            .expect("PUT", &path(&format!("/keys/{key}")), 200, &[], "")
            .await;
        store
            .put(key, "v", fastly::PutOptions::new())
            .await
            .unwrap();
    }
    let page = |keys: &[&str], next: Option<&str>| {
        let mut meta = json!({"limit": 2});
        if let Some(next) = next {
            meta["next_cursor"] = json!(next);
        }
        json!({"data": keys, "meta": meta})
    };
    backend
        .expect_json(
            "GET",
            &path("/keys?limit=2"),
            200,
            page(&["k1", "k2"], Some("Y3Vyc29yMQ==")),
        )
        .await;
    backend
        .expect_json(
            "GET",
            &path("/keys?cursor=Y3Vyc29yMQ%3D%3D&limit=2"),
            200,
            page(&["k3", "k4"], Some("Y3Vyc29yMg==")),
        )
        .await;
    backend
        .expect_json(
            "GET",
            &path("/keys?cursor=Y3Vyc29yMg%3D%3D&limit=2"),
            200,
            page(&["k5"], None),
        )
        .await;
    let pages: Vec<fastly::KeyPage> = store
        .key_pages(fastly::ListKeys::new().limit(2))
        .try_collect()
        .await
        .unwrap();
    let keys: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.keys.iter().map(String::as_str))
        .collect();
    assert_eq!(keys, ["k1", "k2", "k3", "k4", "k5"]);
    assert_eq!(pages.len(), 3);
    assert!(pages[2].cursor.is_none());

    backend.expect("DELETE", &path(""), 409, &[], "").await;
    assert!(client.delete_store(&id).await.unwrap_err().is_conflict());
}

async fn fastly_batch_reports_every_entry(backend: &Backend) {
    let client = backend.fastly();
    let id = backend.fastly_store(&client).await;
    backend
        .expect_json(
            "PUT",
            &format!("/resources/stores/kv/{id}/batch"),
            200,
            json!({"type": "", "title": "success", "errors": []}),
        )
        .await;
    let entries = vec![
        fastly::BulkEntry::new("b1", "one"),
        fastly::BulkEntry::new("..", "refused before sending"),
        fastly::BulkEntry::new("b2", vec![0u8, 255]).ttl_seconds(600),
    ];
    let report = client
        .store(&id)
        .bulk_write(entries, &fastly::BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.written, report.submitted()), (2, 3));
    assert_eq!(
        (report.failed[0].key.as_str(), report.failed[0].index),
        ("..", 1)
    );
}

async fn cloudflare_values_round_trip_with_metadata_and_expiration(backend: &Backend) {
    let client = backend.cloudflare();
    let id = backend.cloudflare_namespace(&client).await;
    let namespace = client.namespace(&id).with_url_encoding(true);
    let path = |rest: &str| format!("/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces/{id}{rest}");

    backend
        .expect_json(
            "PUT",
            &path("/values/user%2F1?expiration_ttl=3600"),
            200,
            cf_ok(json!(null)),
        )
        .await;
    let options = cloudflare::PutOptions::new()
        .expiration_ttl(3600)
        .metadata(json!({"role": "admin"}));
    namespace
        .put("user/1", "{\"name\":\"Ada\"}", options)
        .await
        .unwrap();
    backend
        .expect(
            "GET",
            &path("/values/user%2F1"),
            200,
            &[("expiration", "1893456000")],
            "{\"name\":\"Ada\"}",
        )
        .await;
    let value = namespace.get("user/1").await.unwrap().unwrap();
    assert!(value.expiration().is_some());
    assert_eq!(value.bytes().await.unwrap(), "{\"name\":\"Ada\"}");
    backend
        .expect_json(
            "GET",
            &path("/metadata/user%2F1"),
            200,
            cf_ok(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        namespace.metadata("user/1").await.unwrap(),
        Some(json!({"role": "admin"}))
    );

    let missing = cf_key_not_found();
    backend
        .expect_json("GET", &path("/values/user%2F2"), 404, missing.clone())
        .await;
    assert!(namespace.get("user/2").await.unwrap().is_none());
    backend
        .expect_json("DELETE", &path("/values/user%2F1"), 200, cf_ok(json!(null)))
        .await;
    namespace.delete("user/1").await.unwrap();
    backend
        .expect_json("GET", &path("/metadata/user%2F1"), 404, missing)
        .await;
    assert_eq!(namespace.metadata("user/1").await.unwrap(), None);
}

async fn cloudflare_keys_are_listed_page_by_page_after_a_bulk_write(backend: &Backend) {
    let client = backend.cloudflare();
    let id = backend.cloudflare_namespace(&client).await;
    let namespace = client.namespace(&id);
    let path = |rest: &str| format!("/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces/{id}{rest}");
    let names: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();

    backend
        .expect_json(
            "PUT",
            &path("/bulk"),
            200,
            cf_ok(json!({"successful_key_count": 25, "unsuccessful_keys": []})),
        )
        .await;
    let entries = names
        .iter()
        .map(|k| cloudflare::BulkEntry::text(k.clone(), "v"));
    let report = namespace
        .bulk_write(entries, &cloudflare::BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed.len()), (25, 0));

    let page = |keys: &[String], cursor: &str| {
        let result: Vec<_> = keys.iter().map(|k| json!({"name": k})).collect();
        cf_page(
            json!(result),
            json!({"count": keys.len(), "cursor": cursor}),
        )
    };
    backend
        .expect_json(
            "GET",
            &path("/keys?limit=10"),
            200,
            page(&names[..10], "c-1"),
        )
        .await;
    backend
        .expect_json(
            "GET",
            &path("/keys?cursor=c-1&limit=10"),
            200,
            page(&names[10..20], "c-2"),
        )
        .await;
    backend
        .expect_json(
            "GET",
            &path("/keys?cursor=c-2&limit=10"),
            200,
            page(&names[20..], ""),
        )
        .await;
    let pages: Vec<cloudflare::KeyPage> = namespace
        .key_pages(cloudflare::ListKeys::new().limit(10))
        .try_collect()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages.iter().map(|p| p.keys.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let listed: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.keys.iter().map(|k| k.name.as_str()))
        .collect();
    assert_eq!(listed, names.iter().map(String::as_str).collect::<Vec<_>>());
}

async fn cloudflare_bulk_get_and_delete_report_by_key(backend: &Backend) {
    let client = backend.cloudflare();
    let id = backend.cloudflare_namespace(&client).await;
    let namespace = client.namespace(&id);
    let path = |rest: &str| format!("/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces/{id}{rest}");

    backend
        .expect_json(
            "PUT",
            &path("/bulk"),
            200,
            cf_ok(json!({"successful_key_count": 2, "unsuccessful_keys": []})),
        )
        .await;
    let entries = vec![
        cloudflare::BulkEntry::text("a", "{\"n\":1}").metadata(json!({"m": "a"})),
        cloudflare::BulkEntry::text("b", "{\"n\":2}"),
        cloudflare::BulkEntry::text("", "refused before sending"),
    ];
    let report = namespace
        .bulk_write(entries, &cloudflare::BulkOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (report.written, report.submitted(), report.failed[0].index),
        (2, 3, 2)
    );

    let values = json!({"values": {"a": {"value": {"n": 1}, "metadata": {"m": "a"}}, "b": {"value": {"n": 2}, "metadata": null}, "c": null}});
    backend
        .expect_json("POST", &path("/bulk/get"), 200, cf_ok(values))
        .await;
    let options = cloudflare::BulkGetOptions {
        json: true,
        with_metadata: true,
    };
    let got = namespace.bulk_get(["a", "b", "c"], options).await.unwrap();
    assert_eq!(got["a"].as_ref().unwrap().value, json!({"n": 1}));
    assert_eq!(got["a"].as_ref().unwrap().metadata, Some(json!({"m": "a"})));
    assert_eq!(got["b"].as_ref().unwrap().metadata, None);
    assert_eq!(got["c"], None);

    backend
        .expect_json(
            "POST",
            &path("/bulk/delete"),
            200,
            cf_ok(json!({"successful_key_count": 2, "unsuccessful_keys": []})),
        )
        .await;
    let deleted = namespace
        .bulk_delete(["a", "b"], &cloudflare::BulkOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted.deleted, 2);
}
