//! Cloudflare listings as streams: namespaces by page, keys by cursor, read-ahead, resumption.

use std::time::Duration;

use edgekv::Error;
use edgekv::cloudflare::{Client, Key, ListKeys};
use futures_util::{StreamExt as _, TryStreamExt as _};
use httpmock::MockServer;
use serde_json::{Value, json};

use crate::support;
use crate::support::envelope::cf_page;
use crate::support::{CF_ACCOUNT, CF_NAMESPACE, cf_path, cloudflare_client, exact};

fn keys_page(names: &[&str], cursor: Option<&str>) -> Value {
    let result: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
    let mut info = json!({"count": names.len()});
    if let Some(cursor) = cursor {
        info["cursor"] = json!(cursor);
    }
    cf_page(json!(result), info)
}

#[tokio::test]
async fn namespaces_are_listed_over_three_pages_and_stop_on_result_info() {
    let server = MockServer::start_async().await;
    let base = format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces");
    let mut mocks = Vec::new();
    for (page, ids) in [(1, 1..=5), (2, 6..=10), (3, 11..=12)] {
        let result: Vec<Value> = ids
            .map(|i| json!({"id": format!("n{i}"), "title": format!("title {i}")}))
            .collect();
        let info = json!({"page": page, "per_page": 5, "count": result.len(), "total_count": 12});
        let body = cf_page(json!(result), info);
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "GET", &format!("{base}?page={page}&per_page=5"));
                    then.status(200).json_body(body);
                })
                .await,
        );
    }
    let namespaces: Vec<_> = cloudflare_client(&server)
        .namespaces(Some(5))
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<&str> = namespaces.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10", "n11", "n12"
        ]
    );
    assert_eq!(namespaces[11].title, "title 12");
    for mock in mocks {
        mock.assert_async().await; // each page once, and no fourth request
    }
}

#[tokio::test]
async fn namespace_listing_uses_total_pages_when_given() {
    let server = MockServer::start_async().await;
    let body = support::cloudflare_go_body("TestWorkersKV_ListWorkersKVNamespaces", "response");
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                &format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces?page=1"),
            );
            then.status(200).json_body(body);
        })
        .await;
    let namespaces: Vec<_> = cloudflare_client(&server)
        .namespaces(None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(namespaces.len(), 2);
    mock.assert_async().await;
}

async fn two_page_listing(last_cursor: Option<&str>) {
    let server = MockServer::start_async().await;
    let first = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?prefix=user%2F"));
            then.status(200)
                .json_body(keys_page(&["user/1", "user/2"], Some("c+1=")));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                &cf_path("/keys?cursor=c%2B1%3D&prefix=user%2F"),
            );
            then.status(200)
                .json_body(keys_page(&["user/3"], last_cursor));
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    let keys: Vec<Key> = namespace
        .keys(ListKeys::new().prefix("user/"))
        .try_collect()
        .await
        .unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["user/1", "user/2", "user/3"]);
    first.assert_async().await;
    second.assert_async().await;
}

#[tokio::test]
async fn the_key_listing_ends_on_an_absent_cursor() {
    two_page_listing(None).await;
}

#[tokio::test]
async fn the_key_listing_ends_on_an_empty_cursor() {
    two_page_listing(Some("")).await;
}

#[tokio::test]
async fn keys_carry_expiration_and_metadata() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys"));
            then.status(200).json_body(
                support::cloudflare_go_body("TestWorkersKV_ListKeysWithParameters", "response")
                    .as_object()
                    .cloned()
                    .map(|mut o| {
                        o["result_info"]["cursor"] = json!("");
                        Value::Object(o)
                    })
                    .unwrap(),
            );
        })
        .await;
    let keys: Vec<Key> = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .keys(ListKeys::new())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys[0].metadata, Some(json!("test_key_1_meta")));
    assert_eq!(
        keys[1].metadata,
        Some(json!({"test2_meta_key": "test2_meta_value"}))
    );
}

#[tokio::test]
async fn a_repeated_cursor_ends_the_listing_with_an_error_not_a_loop() {
    let server = MockServer::start_async().await;
    let first = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys"));
            then.status(200).json_body(keys_page(&["a"], Some("same")));
        })
        .await;
    let again = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?cursor=same"));
            then.status(200).json_body(keys_page(&["b"], Some("same")));
        })
        .await;
    let items: Vec<Result<Key, Error>> = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .keys(ListKeys::new())
        .collect()
        .await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0].as_ref().unwrap().name, "a");
    assert_eq!(items[1].as_ref().unwrap().name, "b");
    let error = items[2].as_ref().unwrap_err();
    assert!(
        matches!(error, Error::BadResponse(_)) && error.to_string().contains("repeated cursor"),
        "{error}"
    );
    first.assert_async().await;
    again.assert_async().await; // asked once with that cursor, never again
}

#[tokio::test]
async fn the_page_view_exposes_the_cursor_to_resume_from() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?limit=10"));
            then.status(200)
                .json_body(keys_page(&["a"], Some("next-page")));
        })
        .await;
    let resumed = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?cursor=next-page&limit=10"));
            then.status(200).json_body(keys_page(&["b"], None));
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);
    let mut pages = namespace.key_pages(ListKeys::new().limit(10).read_ahead(0));
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(first.cursor.as_deref(), Some("next-page"));
    drop(pages);
    assert_eq!(
        resumed.calls_async().await,
        0,
        "a lazy listing fetched ahead"
    );

    let rest: Vec<_> = namespace
        .key_pages(ListKeys::new().limit(10).cursor(first.cursor.unwrap()))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        (rest[0].keys[0].name.as_str(), rest[0].cursor.as_deref()),
        ("b", None)
    );
    resumed.assert_async().await;
}

async fn wait_for_calls(mock: &httpmock::Mock<'_>, calls: usize) -> bool {
    for _ in 0..200 {
        if mock.calls_async().await >= calls {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn by_default_the_next_page_is_fetched_while_the_caller_works_and_zero_means_lazy() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys"));
            then.status(200).json_body(keys_page(&["a"], Some("p2")));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?cursor=p2"));
            then.status(200).json_body(keys_page(&["b"], Some("p3")));
        })
        .await;
    let third = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys?cursor=p3"));
            then.status(200).json_body(keys_page(&["c"], None));
        })
        .await;
    let namespace = cloudflare_client(&server).namespace(CF_NAMESPACE);

    let mut lazy = namespace.keys(ListKeys::new().read_ahead(0));
    assert_eq!(lazy.next().await.unwrap().unwrap().name, "a");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        second.calls_async().await,
        0,
        "read_ahead(0) fetched a page nobody asked for"
    );
    drop(lazy);

    let mut eager = namespace.keys(ListKeys::new());
    assert_eq!(eager.next().await.unwrap().unwrap().name, "a");
    assert!(
        wait_for_calls(&second, 1).await,
        "the default listing did not read ahead"
    );
    // One page ahead, not more: the third page waits until the second is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        third.calls_async().await,
        0,
        "read more than one page ahead"
    );
    let rest: Vec<_> = eager.map(|k| k.unwrap().name).collect().await;
    assert_eq!(rest, ["b", "c"]);
}

#[test]
fn clients_are_clone_send_sync_and_their_streams_and_futures_send_and_static() {
    fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    clone_send_sync::<Client>();
    clone_send_sync::<edgekv::cloudflare::Namespace>();
    let client = Client::new("token", CF_ACCOUNT).unwrap();
    let namespace = client.namespace(CF_NAMESPACE);
    send_static(&namespace.keys(ListKeys::new()));
    send_static(&namespace.key_pages(ListKeys::new()));
    send_static(&client.namespaces(None));
    send(&namespace.get("k"));
    send(&namespace.put("k", "v", Default::default()));
    send(&namespace.bulk_write(Vec::new(), &Default::default()));
}

#[test]
fn debug_of_the_client_shows_no_credential() {
    let client = Client::new("secret-token-value", CF_ACCOUNT).unwrap();
    let global = Client::builder(
        edgekv::cloudflare::Auth::GlobalKey {
            email: "me@example.com".into(),
            key: "global-secret".into(),
        },
        CF_ACCOUNT,
    )
    .build()
    .unwrap();
    let debug = format!("{client:?} {global:?} {:?}", client.namespace(CF_NAMESPACE));
    for secret in ["secret-token-value", "me@example.com", "global-secret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}
