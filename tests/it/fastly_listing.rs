//! Fastly listings as streams: keys and stores by cursor, read-ahead, clearing a store.

use crate::support::fastly_concurrency as concurrency;
use std::time::Duration;

use edgekv::Error;
use edgekv::fastly::{Client, Consistency, ListKeys, ListStores};
use futures_util::{StreamExt as _, TryStreamExt as _};
use httpmock::MockServer;
use serde_json::{Value, json};

use crate::support;
use crate::support::{FASTLY_STORE, exact, fastly_client, fastly_path};

fn keys_page(keys: &[&str], limit: u32, next_cursor: Option<&str>) -> String {
    let mut meta = json!({"limit": limit});
    if let Some(cursor) = next_cursor {
        meta["next_cursor"] = json!(cursor);
    }
    json!({"data": keys, "meta": meta}).to_string()
}

#[tokio::test]
async fn keys_are_listed_over_three_pages_ending_on_an_absent_next_cursor() {
    let server = MockServer::start_async().await;
    let pages = [
        (
            "/keys?consistency=strong&limit=2&prefix=a",
            keys_page(&["apple", "apricot"], 2, Some("CgVhcHJpY290")),
        ),
        (
            "/keys?consistency=strong&cursor=CgVhcHJpY290&limit=2&prefix=a",
            keys_page(&["avocado", "azuki"], 2, Some("CgtkcmFnb25mcnVpdA==")),
        ),
        (
            "/keys?consistency=strong&cursor=CgtkcmFnb25mcnVpdA%3D%3D&limit=2&prefix=a",
            keys_page(&["azure"], 2, None),
        ),
    ];
    let mut mocks = Vec::new();
    for (path, body) in pages {
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "GET", &fastly_path(path));
                    then.status(200)
                        .header("content-type", "application/json")
                        .body(body);
                })
                .await,
        );
    }
    let options = ListKeys::new()
        .prefix("a")
        .limit(2)
        .consistency(Consistency::Strong);
    let keys: Vec<String> = fastly_client(&server)
        .store(FASTLY_STORE)
        .keys(options)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys, ["apple", "apricot", "avocado", "azuki", "azure"]);
    for mock in mocks {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn the_recorded_listing_with_a_padded_cursor_replays() {
    let server = MockServer::start_async().await;
    let cassette = support::fastly_cassettes()
        .into_iter()
        .find(|(n, _)| n == "history/list-keys-pagination@daa89a66.yaml")
        .unwrap()
        .1;
    for interaction in &cassette.interactions {
        let path = interaction
            .request
            .path_and_query()
            .replace("fff9gl14gebt6m9kkp54ve", FASTLY_STORE);
        let body = interaction.response.body.clone();
        server
            .mock_async(|when, then| {
                exact(when, "GET", &path);
                then.status(200)
                    .header("content-type", "application/json")
                    .body(body);
            })
            .await;
    }
    let mut pages = fastly_client(&server)
        .store(FASTLY_STORE)
        .key_pages(ListKeys::new().limit(4));
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(first.cursor.as_deref(), Some("CgtkcmFnb25mcnVpdA=="));
    let last = pages.next().await.unwrap().unwrap();
    assert_eq!(
        (last.keys.as_slice(), last.cursor.as_deref()),
        (["eggplant".to_string()].as_slice(), None)
    );
    assert!(pages.next().await.is_none());
}

#[tokio::test]
async fn a_repeated_cursor_ends_the_listing_with_an_error() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys"));
            then.status(200).body(keys_page(&["a"], 1000, Some("same")));
        })
        .await;
    let again = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys?cursor=same"));
            then.status(200).body(keys_page(&["b"], 1000, Some("same")));
        })
        .await;
    let items: Vec<Result<String, Error>> = fastly_client(&server)
        .store(FASTLY_STORE)
        .keys(ListKeys::new())
        .collect()
        .await;
    assert_eq!(items.len(), 3);
    assert!(
        items[2]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("repeated cursor")
    );
    again.assert_async().await;
}

#[tokio::test]
async fn the_key_stream_reads_one_page_ahead_by_default_and_none_when_lazy() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys"));
            then.status(200).body(keys_page(&["a"], 1000, Some("p2")));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys?cursor=p2"));
            then.status(200).body(keys_page(&["b"], 1000, None));
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    let mut lazy = store.keys(ListKeys::new().read_ahead(0));
    assert_eq!(lazy.next().await.unwrap().unwrap(), "a");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(second.calls_async().await, 0);
    drop(lazy);

    let mut eager = store.keys(ListKeys::new());
    assert_eq!(eager.next().await.unwrap().unwrap(), "a");
    let mut fetched = false;
    for _ in 0..200 {
        if second.calls_async().await == 1 {
            fetched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fetched, "the default listing did not read ahead");
    assert_eq!(eager.next().await.unwrap().unwrap(), "b");
}

#[tokio::test]
async fn stores_are_listed_by_cursor_and_by_name() {
    let server = MockServer::start_async().await;
    let store = |id: &str| json!({"id": id, "name": format!("store {id}"), "created_at": "2025-06-23 19:41:15", "updated_at": "2025-06-23 19:41:15"});
    let first = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv?limit=2");
            then.status(200).json_body(json!({"data": [store("s1"), store("s2")], "meta": {"limit": 2, "next_cursor": "c2", "total": 3}}));
        })
        .await;
    let second = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv?cursor=c2&limit=2");
            then.status(200)
                .json_body(json!({"data": [store("s3")], "meta": {"limit": 2, "total": 3}}));
        })
        .await;
    let named = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv?name=store+s2");
            then.status(200)
                .json_body(json!({"data": [store("s2")], "meta": {"limit": 1000}}));
        })
        .await;
    let client = fastly_client(&server);
    let mut options = ListStores::default();
    options.limit = Some(2);
    let ids: Vec<String> = client
        .stores(options)
        .map_ok(|s| s.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    let mut by_name = ListStores::default();
    by_name.name = Some("store s2".into());
    let found: Vec<_> = client.stores(by_name).try_collect().await.unwrap();
    assert_eq!(found[0].name, "store s2");
    first.assert_async().await;
    second.assert_async().await;
    named.assert_async().await;
}

#[tokio::test]
async fn delete_with_contents_clears_the_store_then_deletes_it() {
    let server = MockServer::start_async().await;
    let recorded = support::fastly_cassettes()
        .into_iter()
        .find(|(n, _)| n == "kv_store/cleanup.yaml")
        .unwrap()
        .1;
    let listing: Value = serde_json::from_str(&recorded.interactions[0].response.body).unwrap();
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys"));
            then.status(200)
                .json_body(json!({"data": listing["data"], "meta": {"limit": 1000}}));
        })
        .await;
    let item_deletes = server
        .mock_async(|when, then| {
            when.method("DELETE").path_prefix(fastly_path("/keys/"));
            then.status(204);
        })
        .await;
    let store_delete = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path(""));
            then.status(204);
        })
        .await;
    let report = fastly_client(&server)
        .delete_store_with_contents(FASTLY_STORE, &concurrency(3))
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.written, report.failed.len()),
        (7, 0, 0)
    );
    assert_eq!(item_deletes.calls_async().await, 7);
    store_delete.assert_async().await;
}

#[tokio::test]
async fn a_store_whose_items_cannot_all_be_deleted_is_left_in_place() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys"));
            then.status(200)
                .json_body(json!({"data": ["a", "b"], "meta": {"limit": 1000}}));
        })
        .await;
    // Deletes are sent with `force`: a 404 is then the store's (httpmock's answer to an
    // unmatched request), a failure; the calls counted below show each key's own path was asked.
    let delete_a = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/a?force=true"));
            then.status(204);
        })
        .await;
    let delete_b = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/b?force=true"));
            then.status(500);
        })
        .await;
    let store_delete = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path(""));
            then.status(204);
        })
        .await;
    let report = fastly_client(&server)
        .delete_store_with_contents(FASTLY_STORE, &concurrency(2))
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert_eq!(
        (report.failed[0].key.as_str(), report.failed[0].index),
        ("b", 1)
    );
    delete_a.assert_async().await;
    assert!(delete_b.calls_async().await >= 1);
    assert_eq!(store_delete.calls_async().await, 0);
}

#[test]
fn clients_are_clone_send_sync_and_their_streams_and_futures_send_and_static() {
    fn clone_send_sync<T: Clone + Send + Sync + 'static>() {}
    fn send_static<T: Send + 'static>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    clone_send_sync::<Client>();
    clone_send_sync::<edgekv::fastly::Store>();
    let client = Client::new("token").unwrap();
    let store = client.store(FASTLY_STORE);
    send_static(&store.keys(ListKeys::new()));
    send_static(&store.key_pages(ListKeys::new()));
    send_static(&client.stores(ListStores::default()));
    send(&store.get("k"));
    send(&store.put("k", "v", Default::default()));
    send(&store.bulk_write(Vec::new(), &Default::default()));
    send(&store.clear(&concurrency(4)));
}

#[test]
fn debug_of_the_client_shows_no_token() {
    let client = Client::new("secret-fastly-token").unwrap();
    let debug = format!("{client:?} {:?}", client.store(FASTLY_STORE));
    assert!(!debug.contains("secret-fastly-token"), "{debug}");
}
