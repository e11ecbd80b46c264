//! The emulator enforces the services' documented rules by itself (`src/emulator/rules.rs`),
//! not through the facades' checks: each request here is what a buggy client could send, sent
//! with the generated raw clients or plain `reqwest`, which check no limits, and the emulator's
//! exact refusal is asserted. The boundary values are accepted, so the rules are not merely
//! stricter than the services'.

use edgekv::cloudflare::raw as cf_raw;
use edgekv::emulator::{DEFAULT_ACCOUNT, DEFAULT_TOKEN, Emulator, EmulatorConfig};
use edgekv::fastly::raw as fastly_raw;
use edgekv::transport::{Credential, Transport};
use serde_json::{Value, json};

async fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.unwrap()
}

fn http() -> reqwest::Client {
    edgekv::http::client_builder().build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Cloudflare

fn cloudflare(emulator: &Emulator) -> cf_raw::Client {
    let credential = Credential::CloudflareToken(DEFAULT_TOKEN.into());
    cf_raw::Client::new_with_client(
        &emulator.cloudflare_url(),
        http(),
        Transport::new(credential).unwrap(),
    )
}

async fn namespace(client: &cf_raw::Client) -> String {
    let title = cf_raw::types::NamespaceTitle {
        title: "rules".into(),
    };
    let created = client.namespace_create(DEFAULT_ACCOUNT, &title).await;
    created.unwrap().into_inner().result.unwrap().id
}

/// The status and first error code of a refused call; panics if the call succeeded.
fn refusal<T>(
    result: Result<cf_raw::ResponseValue<T>, cf_raw::Error<cf_raw::types::Failure>>,
) -> (u16, i64) {
    match result {
        Err(cf_raw::Error::ErrorResponse(failure)) => {
            let status = failure.status().as_u16();
            let failure = failure.into_inner();
            assert!(!failure.success);
            (status, failure.errors[0].code)
        }
        Ok(accepted) => panic!("the emulator accepted: {}", accepted.status()),
        Err(other) => panic!("{other:?}"),
    }
}

fn item(key: impl Into<String>) -> cf_raw::types::BulkWriteItem {
    cf_raw::types::BulkWriteItem {
        base64: None,
        expiration: None,
        expiration_ttl: None,
        key: key.into(),
        metadata: None,
        value: "v".into(),
    }
}

fn bulk(items: Vec<cf_raw::types::BulkWriteItem>) -> cf_raw::types::BulkWrite {
    cf_raw::types::BulkWrite(items)
}

fn bulk_get(keys: Vec<String>) -> cf_raw::types::BulkGetRequest {
    cf_raw::types::BulkGetRequest {
        keys,
        type_: None,
        with_metadata: None,
    }
}

/// `{"m":"…"}` of exactly `len` bytes, serialized.
fn metadata_of_len(len: usize) -> Value {
    json!({"m": "x".repeat(len - r#"{"m":""}"#.len())})
}

#[tokio::test]
async fn cloudflare_refuses_keys_over_512_bytes_and_dot_keys() {
    let emulator = start().await;
    let client = cloudflare(&emulator);
    let ns = namespace(&client).await;
    let put = |key: String| {
        let (client, ns) = (&client, &ns);
        async move {
            let result = client
                .value_put(DEFAULT_ACCOUNT, ns, &key, None, None, "v")
                .await;
            refusal(result)
        }
    };
    assert_eq!(put("k".repeat(513)).await, (414, 10033));
    // Bytes, not characters: 171 three-byte characters are 513 bytes.
    assert_eq!(put("€".repeat(171)).await, (414, 10033));

    let long = client
        .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(vec![item("k".repeat(513))]))
        .await;
    assert_eq!(refusal(long), (414, 10033));
    // A URL cannot carry `.`, `..` or an empty key, a bulk body can.
    for key in [".", "..", ""] {
        let written = client
            .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(vec![item("ok"), item(key)]))
            .await;
        assert_eq!(refusal(written), (400, 10019), "{key:?}");
    }
    let nothing = client.value_get(DEFAULT_ACCOUNT, &ns, "ok").await;
    assert_eq!(
        refusal(nothing),
        (404, 10009),
        "a refused bulk writes nothing"
    );

    let named = bulk_get(vec!["a".into(), "k".repeat(513)]);
    let got = client.bulk_get(DEFAULT_ACCOUNT, &ns, &named).await;
    assert_eq!(refusal(got), (414, 10033));
    let deleted = client
        .bulk_delete(
            DEFAULT_ACCOUNT,
            &ns,
            &cf_raw::types::BulkDelete(vec!["k".repeat(513)]),
        )
        .await;
    assert_eq!(refusal(deleted), (414, 10033));
}

#[tokio::test]
async fn cloudflare_refuses_a_ttl_under_60_seconds_and_metadata_over_1024_bytes() {
    let emulator = start().await;
    let client = cloudflare(&emulator);
    let ns = namespace(&client).await;

    let short = client
        .value_put(DEFAULT_ACCOUNT, &ns, "k", None, Some(59), "v")
        .await;
    assert_eq!(refusal(short), (400, 10020));
    let mut ttl = item("k");
    ttl.expiration_ttl = Some(59);
    let short = client
        .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(vec![ttl]))
        .await;
    assert_eq!(refusal(short), (400, 10020));
    let soon = unix_now() + 30;
    let early = client
        .value_put(DEFAULT_ACCOUNT, &ns, "k", Some(soon), None, "v")
        .await;
    assert_eq!(refusal(early), (400, 10021));

    let mut large = item("k");
    large.metadata = Some(metadata_of_len(1025));
    let large = client
        .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(vec![large]))
        .await;
    assert_eq!(refusal(large), (413, 10023));
    // The multipart form of a single write, which the raw client does not generate.
    let metadata = metadata_of_len(1025).to_string();
    let (status, body) = multipart_put(&emulator, &ns, "k", &metadata).await;
    assert_eq!(
        (status, body["errors"][0]["code"].clone()),
        (413, json!(10023))
    );
}

#[tokio::test]
async fn cloudflare_refuses_bulk_requests_over_their_counts() {
    let emulator = start().await;
    let client = cloudflare(&emulator);
    let ns = namespace(&client).await;

    let pairs: Vec<_> = (0..10_001).map(|i| item(format!("k{i}"))).collect();
    let written = client.bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(pairs)).await;
    assert_eq!(refusal(written), (400, 10001));

    let keys: Vec<String> = (0..101).map(|i| format!("k{i}")).collect();
    let got = client.bulk_get(DEFAULT_ACCOUNT, &ns, &bulk_get(keys)).await;
    assert_eq!(refusal(got), (400, 10001));

    let keys: Vec<String> = (0..10_001).map(|i| format!("k{i}")).collect();
    let deleted = client
        .bulk_delete(DEFAULT_ACCOUNT, &ns, &cf_raw::types::BulkDelete(keys))
        .await;
    assert_eq!(refusal(deleted), (400, 10001));
}

#[tokio::test]
async fn cloudflare_refuses_a_value_over_25_mib_and_a_bulk_body_over_100_mb() {
    let emulator = start().await;
    let client = cloudflare(&emulator);
    let ns = namespace(&client).await;
    let large = vec![b'v'; 25 * 1024 * 1024 + 1];
    let put = client
        .value_put(DEFAULT_ACCOUNT, &ns, "k", None, None, large)
        .await;
    assert_eq!(refusal(put), (413, 10024));
    let exact = vec![b'v'; 25 * 1024 * 1024];
    client
        .value_put(DEFAULT_ACCOUNT, &ns, "k", None, None, exact)
        .await
        .unwrap();

    // The size is checked before the body is read as JSON, so padding is enough.
    let url = format!(
        "{}/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces/{ns}/bulk",
        emulator.cloudflare_url()
    );
    let response = http()
        .put(url)
        .bearer_auth(DEFAULT_TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000_001])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (status, body["errors"][0]["code"].clone()),
        (413, json!(10024))
    );
}

#[tokio::test]
async fn cloudflare_accepts_every_boundary_value() {
    let emulator = start().await;
    let client = cloudflare(&emulator);
    let ns = namespace(&client).await;

    for key in ["k".repeat(512), "€".repeat(170) + "aa", "...".into()] {
        client
            .value_put(DEFAULT_ACCOUNT, &ns, &key, None, Some(60), "v")
            .await
            .unwrap();
        client.value_get(DEFAULT_ACCOUNT, &ns, &key).await.unwrap();
    }
    let ahead = unix_now() + 120;
    client
        .value_put(DEFAULT_ACCOUNT, &ns, "at", Some(ahead), None, "v")
        .await
        .unwrap();

    let mut boundary = item("k".repeat(512));
    boundary.expiration_ttl = Some(60);
    boundary.metadata = Some(metadata_of_len(1024));
    let written = client
        .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(vec![boundary]))
        .await
        .unwrap();
    assert_eq!(
        written.into_inner().result.unwrap().successful_key_count,
        Some(1)
    );
    let stored = client
        .metadata_get(DEFAULT_ACCOUNT, &ns, &"k".repeat(512))
        .await
        .unwrap();
    assert_eq!(stored.into_inner().result, Some(metadata_of_len(1024)));
    let metadata = metadata_of_len(1024).to_string();
    let (status, _) = multipart_put(&emulator, &ns, "form", &metadata).await;
    assert_eq!(status, 200);

    let pairs: Vec<_> = (0..10_000).map(|i| item(format!("k{i:05}"))).collect();
    let written = client
        .bulk_write(DEFAULT_ACCOUNT, &ns, &bulk(pairs))
        .await
        .unwrap();
    assert_eq!(
        written.into_inner().result.unwrap().successful_key_count,
        Some(10_000)
    );
    let keys: Vec<String> = (0..100).map(|i| format!("k{i:05}")).collect();
    client
        .bulk_get(DEFAULT_ACCOUNT, &ns, &bulk_get(keys))
        .await
        .unwrap();
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i:05}")).collect();
    let deleted = client
        .bulk_delete(DEFAULT_ACCOUNT, &ns, &cf_raw::types::BulkDelete(keys))
        .await
        .unwrap();
    assert_eq!(
        deleted.into_inner().result.unwrap().successful_key_count,
        Some(10_000)
    );
}

/// A single write as a multipart form with `value` and `metadata`: status and JSON body.
async fn multipart_put(emulator: &Emulator, ns: &str, key: &str, metadata: &str) -> (u16, Value) {
    let boundary = "rules-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"value\"\r\n\r\nv\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n\
         --{boundary}--\r\n"
    );
    let url = format!(
        "{}/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces/{ns}/values/{key}",
        emulator.cloudflare_url()
    );
    let response = http()
        .put(url)
        .bearer_auth(DEFAULT_TOKEN)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------------------------
// Fastly

fn fastly(emulator: &Emulator) -> fastly_raw::Client {
    let credential = Credential::FastlyToken(DEFAULT_TOKEN.into());
    fastly_raw::Client::new_with_client(
        &emulator.fastly_url(),
        http(),
        Transport::new(credential).unwrap(),
    )
}

async fn store(client: &fastly_raw::Client) -> String {
    let name = fastly_raw::types::KvStoreRequestCreateOrUpdate {
        name: "rules".into(),
    };
    let created = client.kv_store_create(None, &name).await.unwrap();
    created.into_inner().id.unwrap()
}

/// The status of an item write through the raw client: 200, or the refusal's status.
async fn raw_put(
    client: &fastly_raw::Client,
    store: &str,
    key: &str,
    metadata: Option<&str>,
    value: Vec<u8>,
) -> u16 {
    let written = client
        .kv_store_upsert_item(
            store, key, None, None, None, None, None, metadata, None, value,
        )
        .await;
    match written {
        Ok(response) => response.status().as_u16(),
        Err(fastly_raw::Error::ErrorResponse(response)) => response.status().as_u16(),
        // The spec lists no 413 for this operation, so the client does not decode it.
        Err(fastly_raw::Error::UnexpectedResponse(response)) => response.status().as_u16(),
        Err(other) => panic!("{other:?}"),
    }
}

/// An item write with plain `reqwest`, the key segment given already encoded: status and body.
async fn put_encoded(emulator: &Emulator, store: &str, segment: &str) -> (u16, Value) {
    let url = format!(
        "{}/resources/stores/kv/{store}/keys/{segment}",
        emulator.fastly_url()
    );
    let response = http()
        .put(url)
        .header("fastly-key", DEFAULT_TOKEN)
        .body("v")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn bad_request(detail: &str) -> (u16, Value) {
    (400, json!({"msg": "Bad request", "detail": detail}))
}

#[tokio::test]
async fn fastly_refuses_long_reserved_and_line_breaking_keys() {
    let emulator = start().await;
    let client = fastly(&emulator);
    let store = store(&client).await;
    for key in [
        "k".repeat(1025),
        // 513 two-byte characters: 1026 bytes.
        "é".repeat(513),
        ".well-known/acme-challenge/token".into(),
        ".well-known/acme-challenge/".into(),
        "line\nbreak".into(),
        "carriage\rreturn".into(),
    ] {
        assert_eq!(
            raw_put(&client, &store, &key, None, b"v".to_vec()).await,
            400,
            "{key:?}"
        );
    }
    // The body says which rule, in Fastly's error shape.
    let long = "k".repeat(1025);
    assert_eq!(
        put_encoded(&emulator, &store, &long).await,
        bad_request("key is 1025 bytes, longer than 1024")
    );
    assert_eq!(
        put_encoded(&emulator, &store, ".well-known%2Facme-challenge%2Fx").await,
        bad_request("key may not start with `.well-known/acme-challenge/`")
    );
    assert_eq!(
        put_encoded(&emulator, &store, "a%0Db").await,
        bad_request("key contains CR or LF at byte 1")
    );
    assert_eq!(
        put_encoded(&emulator, &store, "%FF").await,
        bad_request("key is not valid UTF-8")
    );
    assert_eq!(
        put_encoded(&emulator, &store, "").await,
        bad_request("key is empty")
    );
}

#[tokio::test]
async fn fastly_refuses_metadata_over_2000_bytes_and_a_value_over_25_mb() {
    let emulator = start().await;
    let client = fastly(&emulator);
    let store = store(&client).await;
    let metadata = "m".repeat(2001);
    assert_eq!(
        raw_put(&client, &store, "k", Some(&metadata), b"v".to_vec()).await,
        400
    );
    let value = vec![b'v'; 25_000_001];
    assert_eq!(raw_put(&client, &store, "k", None, value).await, 413);
    let missing = client.kv_store_get_item(&store, "k").await;
    assert!(
        matches!(missing, Err(fastly_raw::Error::ErrorResponse(ref r)) if r.status() == 404),
        "a refused write stores nothing"
    );
}

#[tokio::test]
async fn fastly_batch_lines_breaking_a_rule_are_reported_and_the_rest_written() {
    let emulator = start().await;
    let client = fastly(&emulator);
    let store = store(&client).await;
    let line = |key: &str, metadata: Option<String>| {
        json!({"key": key, "value": "dg==", "metadata": metadata}).to_string()
    };
    let lines = [
        line("good-0", None),
        line(".", None),
        line("..", None),
        line(".well-known/acme-challenge/x", None),
        line(&"k".repeat(1025), None),
        line("a\nb", None),
        line("good-1", Some("m".repeat(2001))),
        line("good-2", Some("m".repeat(2000))),
    ];
    let url = format!(
        "{}/resources/stores/kv/{store}/batch",
        emulator.fastly_url()
    );
    let response = http()
        .put(url)
        .header("fastly-key", DEFAULT_TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "batch-errors");
    let refused: Vec<(u64, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (1, "key may not be `.` or `..`".to_string()),
            (2, "key may not be `.` or `..`".to_string()),
            (
                3,
                "key may not start with `.well-known/acme-challenge/`".to_string()
            ),
            (4, "key is 1025 bytes, longer than 1024".to_string()),
            (5, "key contains CR or LF at byte 1".to_string()),
            (6, "metadata too large".to_string()),
        ]
    );
    for key in ["good-0", "good-2"] {
        client.kv_store_get_item(&store, key).await.unwrap();
    }
}

#[tokio::test]
async fn fastly_accepts_every_boundary_value() {
    let emulator = start().await;
    let client = fastly(&emulator);
    let store = store(&client).await;
    for key in [
        "k".repeat(1024),
        "é".repeat(512),
        "...".into(),
        ".well-known/acme-challenge".into(),
        "x.well-known/acme-challenge/".into(),
        // Only CR and LF are documented as forbidden; the facade refuses every control
        // character, which is its own choice, not the service's rule.
        "tab\tand\u{1}".into(),
    ] {
        assert_eq!(
            raw_put(&client, &store, &key, None, b"v".to_vec()).await,
            200,
            "{key:?}"
        );
        client.kv_store_get_item(&store, &key).await.unwrap();
    }
    let metadata = "m".repeat(2000);
    assert_eq!(
        raw_put(&client, &store, "meta", Some(&metadata), b"v".to_vec()).await,
        200
    );
    let item = client.kv_store_get_item(&store, "meta").await.unwrap();
    let stored = item.headers().get("metadata").unwrap().to_str().unwrap();
    assert_eq!(stored, metadata);
    let value = vec![b'v'; 25_000_000];
    assert_eq!(raw_put(&client, &store, "big", None, value).await, 200);
}

// ---------------------------------------------------------------------------------------------
// Request budgets

/// Past its budget the emulator answers 429 with the wait, counting as each provider counts:
/// Cloudflare every request (code 971 in its envelope), Fastly only what is not a read. The
/// facades, without retries, see a rate-limited error with the wait asked for.
#[tokio::test]
async fn a_budget_is_counted_as_each_provider_counts_it() {
    use std::time::Duration;

    use edgekv::emulator::Budget;
    use edgekv::policy::{RequestPolicy, RetryPolicy};

    let per = Duration::from_secs(60);
    let config = EmulatorConfig::default()
        .cloudflare_budget(Budget::new(3, per))
        .fastly_budget(Budget::new(2, per));
    let emu = Emulator::start(config).await.unwrap();
    let no_retries = RequestPolicy::default().retry(RetryPolicy::disabled());

    // Fastly: reads are free, the third write is refused.
    let store = emu.fastly_store().await.unwrap(); // one write: the store's creation
    let fastly = emu
        .fastly_builder()
        .policy(no_retries.clone())
        .build()
        .unwrap();
    let store = fastly.store(store.id());
    store.put("a", "1", Default::default()).await.unwrap();
    for _ in 0..10 {
        assert!(store.get("a").await.unwrap().is_some());
    }
    let error = store.put("b", "2", Default::default()).await.unwrap_err();
    assert!(error.is_rate_limited(), "{error:?}");
    let wait = error.retry_after().expect("the wait");
    assert!(wait > Duration::from_secs(55) && wait <= per, "{wait:?}");
    let last = emu.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("PUT", 429));
    assert_eq!(last.header("fastly-key"), Some("[redacted]"));

    // Cloudflare: reads count too; the refusal is Cloudflare's envelope with code 971.
    let cloudflare = emu.cloudflare_builder().policy(no_retries).build().unwrap();
    let created = cloudflare.create_namespace("budgeted").await.unwrap(); // 1
    let namespace = cloudflare.namespace(&created.id).with_url_encoding(true);
    assert!(namespace.get("k").await.unwrap().is_none()); // 2
    assert!(namespace.get("k").await.unwrap().is_none()); // 3
    let error = namespace.get("k").await.unwrap_err();
    assert!(error.is_rate_limited(), "{error:?}");
    assert_eq!(error.codes(), [971]);
    assert!(error.retry_after().is_some());
}
