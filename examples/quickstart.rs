//! A tour of both generated clients against a local server this example starts itself.
//!
//! The server answers with responses recorded from the real services (Fastly's come from
//! go-fastly's live recordings), so what prints is what the clients decode from real shapes.
//! Until the emulator exists, the server is a mock: it does not store what is written.
//!
//! Run: `cargo run --example quickstart`

use edgekv::cloudflare::raw as cf;
use edgekv::fastly::raw as fastly;
use edgekv::seam::{Credential, Seam};
use futures_util::TryStreamExt as _;
use httpmock::MockServer;
use serde_json::json;

const STORE: &str = "iaa48y0oxw13s12xpfdkk9";
const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const NAMESPACE: &str = "0f2ac74b498b48028cb68387c421e279";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = MockServer::start_async().await;
    serve_recorded_responses(&server).await;
    println!("local server at {}", server.base_url());

    let http = edgekv::http::client_builder().build()?;
    let fastly = fastly::Client::new_with_client(
        &server.base_url(),
        http.clone(),
        Seam::new(Credential::FastlyToken("local-token".into()))?,
    );
    let store = fastly
        .kv_store_create(
            None,
            &fastly::types::KvStoreRequestCreateOrUpdate {
                name: "kv-store-test-store".into(),
            },
        )
        .await?;
    println!("fastly: created store {:?} ({})", store.id, store.status());
    fastly
        .kv_store_upsert_item(
            STORE, "apple", None, None, None, None, None, None, None, "apple0",
        )
        .await?;
    let item = fastly.kv_store_get_item(STORE, "apple").await?;
    let generation = item.headers()["generation"].to_str()?.to_owned();
    let value: Vec<u8> = item
        .into_inner()
        .into_inner()
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await?;
    println!(
        "fastly: apple = {:?} at generation {generation}",
        String::from_utf8_lossy(&value)
    );
    let keys = fastly
        .kv_store_list_item_keys(STORE, None, None, Some(4.try_into()?), None)
        .await?
        .into_inner();
    println!(
        "fastly: first page {:?}, next cursor {:?}",
        keys.data, keys.meta.next_cursor
    );

    let cloudflare = cf::Client::new_with_client(
        &server.base_url(),
        http,
        Seam::new(Credential::CloudflareToken("local-token".into()))?,
    );
    let namespace = cloudflare
        .namespace_create(
            ACCOUNT,
            &cf::types::NamespaceTitle {
                title: "My Own Namespace".into(),
            },
        )
        .await?;
    println!(
        "cloudflare: created namespace {:?}",
        namespace.into_inner().result.map(|n| n.id)
    );
    cloudflare
        .value_put(ACCOUNT, NAMESPACE, "My-Key", None, Some(300), "Some Value")
        .await?;
    let keys = cloudflare
        .keys_list(ACCOUNT, NAMESPACE, None, None, None)
        .await?
        .into_inner();
    let names: Vec<&str> = keys.result.iter().map(|k| k.name.as_str()).collect();
    println!("cloudflare: keys {names:?}");
    Ok(())
}

async fn serve_recorded_responses(server: &MockServer) {
    let ns = format!("/accounts/{ACCOUNT}/storage/kv/namespaces");
    let store_json = r#"{"id":"iaa48y0oxw13s12xpfdkk9","name":"kv-store-test-store","created_at":"2025-06-23 19:41:15","updated_at":"2025-06-23 19:41:15"}"#;
    server
        .mock_async(|when, then| {
            when.method("POST").path("/resources/stores/kv");
            then.status(201)
                .header("content-type", "application/json")
                .body(store_json);
        })
        .await;
    server
        .mock_async(|when, then| {
            when.method("PUT")
                .path(format!("/resources/stores/kv/{STORE}/keys/apple"));
            then.status(200);
        })
        .await;
    server
        .mock_async(|when, then| {
            when.method("GET")
                .path(format!("/resources/stores/kv/{STORE}/keys/apple"));
            then.status(200)
                .header("generation", "1750707676353461")
                .header("metadata", "")
                .body("apple0");
        })
        .await;
    server.mock_async(|when, then| {
        when.method("GET").path(format!("/resources/stores/kv/{STORE}/keys"));
        then.status(200).header("content-type", "application/json")
            .body(r#"{"data":["apple","banana","batch-1","batch-2"],"meta":{"limit":4,"next_cursor":"CgdiYXRjaC0y"}}"#);
    }).await;
    let envelope = |result: serde_json::Value| json!({"success": true, "errors": [], "messages": [], "result": result});
    server.mock_async(|when, then| {
        when.method("POST").path(ns.clone());
        then.status(200).json_body(envelope(json!({"id": NAMESPACE, "title": "My Own Namespace", "supports_url_encoding": true})));
    }).await;
    server
        .mock_async(|when, then| {
            when.method("PUT")
                .path(format!("{ns}/{NAMESPACE}/values/My-Key"));
            then.status(200).json_body(envelope(json!(null)));
        })
        .await;
    server
        .mock_async(|when, then| {
            when.method("GET").path(format!("{ns}/{NAMESPACE}/keys"));
            then.status(200)
                .json_body(json!({"success": true, "errors": [], "messages": [],
            "result": [{"name": "My-Key", "expiration": 1577836800, "metadata": {}}],
            "result_info": {"count": 1, "cursor": ""}}));
        })
        .await;
}
