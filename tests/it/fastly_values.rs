//! Fastly items through the facade: generations and metadata, write modes, conditions,
//! streaming both ways, key encoding, and the checks refused before any request.

use bytes::Bytes;
use edgekv::Body;
use edgekv::error::{Error, InvalidInput};
use edgekv::fastly::{DeleteOptions, PutOptions, WriteMode, limits};
use futures_util::StreamExt as _;
use httpmock::MockServer;

use crate::support::{FASTLY_STORE, FASTLY_TOKEN, exact, fastly_client, fastly_path};

const LIVE_GENERATION: u64 = 1_750_707_676_353_461;

#[tokio::test]
async fn get_returns_the_raw_value_its_u64_generation_and_metadata() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/apple")).header("fastly-key", FASTLY_TOKEN);
            then.status(200)
                .header("content-type", "application/octet-stream")
                .header("generation", LIVE_GENERATION.to_string())
                .header("metadata", "meta")
                .body("apple0");
        })
        .await;
    let item = fastly_client(&server)
        .store(FASTLY_STORE)
        .get("apple")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.generation(), LIVE_GENERATION);
    assert_eq!(item.metadata(), Some("meta"));
    // Raw bytes, never parsed: the official SDK fails on this very value.
    assert_eq!(item.bytes().await.unwrap(), "apple0");
    mock.assert_async().await;
}

#[tokio::test]
async fn bytes_joins_a_value_that_arrives_in_many_chunks_and_an_empty_one_is_empty() {
    // 3 MiB of a repeating pattern: more than one read of the connection.
    let value: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let server = MockServer::start_async().await;
    let big = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/big"));
            then.status(200)
                .header("generation", "1")
                .body(value.clone());
        })
        .await;
    let empty = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/empty"));
            then.status(200).header("generation", "2").body("");
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    let got = store
        .get("big")
        .await
        .unwrap()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == value, "the joined bytes differ from the value");
    let got = store
        .get("empty")
        .await
        .unwrap()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.is_empty());
    big.assert_async().await;
    empty.assert_async().await;
}

#[tokio::test]
async fn an_empty_metadata_header_is_none() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/apple"));
            then.status(200)
                .header("generation", "1750707679010223")
                .header("metadata", "")
                .body("prefixapple0suffix");
        })
        .await;
    let item = fastly_client(&server)
        .store(FASTLY_STORE)
        .get("apple")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.metadata(), None);
    assert_eq!(item.generation(), 1_750_707_679_010_223);
}

#[tokio::test]
async fn a_missing_key_is_none_once_the_store_is_known_to_exist() {
    let server = MockServer::start_async().await;
    let missing = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/nothing"));
            then.status(404);
        })
        .await;
    let store_check = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path(""));
            then.status(200)
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"id":"{FASTLY_STORE}","name":"kv-store-test-store"}}"#
                ));
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    assert!(store.get("nothing").await.unwrap().is_none());
    assert!(store.get("nothing").await.unwrap().is_none());
    assert_eq!(missing.calls_async().await, 2);
    assert_eq!(
        store_check.calls_async().await,
        1,
        "the store is confirmed once, then remembered"
    );
}

#[tokio::test]
async fn a_missing_store_stays_an_error() {
    let server = MockServer::start_async().await;
    // httpmock answers a request no mock matches with 404 too: only the calls counted below show
    // that these two paths were asked.
    let missing = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv/gone/keys/k");
            then.status(404);
        })
        .await;
    let store_check = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv/gone");
            then.status(404);
        })
        .await;
    let error = fastly_client(&server)
        .store("gone")
        .get("k")
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    missing.assert_async().await;
    store_check.assert_async().await;
}

#[tokio::test]
async fn put_sends_each_mode_with_the_exact_query_and_headers() {
    let server = MockServer::start_async().await;
    let cases = [
        (WriteMode::Overwrite, ""),
        (WriteMode::Add, "?add=true"),
        (WriteMode::Append, "?append=true"),
        (WriteMode::Prepend, "?prepend=true"),
    ];
    let mut mocks = Vec::new();
    for (mode, query) in cases {
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "PUT", &fastly_path(&format!("/keys/{mode:?}{query}")))
                        .header("fastly-key", FASTLY_TOKEN)
                        .header("content-type", "application/octet-stream")
                        .header_missing("if-generation-match")
                        .header_missing("metadata")
                        .header_missing("time_to_live_sec")
                        .body("value");
                    then.status(200).header("content-length", "0");
                })
                .await,
        );
    }
    let store = fastly_client(&server).store(FASTLY_STORE);
    for (mode, _) in cases {
        store
            .put(&format!("{mode:?}"), "value", PutOptions::new().mode(mode))
            .await
            .unwrap();
    }
    for mock in mocks {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn put_sends_generation_ttl_metadata_and_background_fetch() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "PUT",
                &fastly_path("/keys/apple?background_fetch=true&prepend=true"),
            )
            .header("if-generation-match", LIVE_GENERATION.to_string())
            .header("metadata", "meta")
            .header("time_to_live_sec", "3600")
            .body("prefix");
            then.status(200);
        })
        .await;
    let options = PutOptions::new()
        .mode(WriteMode::Prepend)
        .if_generation_match(LIVE_GENERATION)
        .metadata("meta")
        .ttl_seconds(3600)
        .background_fetch(true);
    fastly_client(&server)
        .store(FASTLY_STORE)
        .put("apple", "prefix", options)
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn a_stale_generation_or_add_on_an_existing_key_is_precondition_failed() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/keys/apple"))
                .header("if-generation-match", "1750707679010223");
            then.status(412).header("content-length", "0");
        })
        .await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/keys/apple?add=true"));
            then.status(412).header("content-length", "0");
        })
        .await;
    server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/apple"))
                .header("if-generation-match", "1750707679477774");
            then.status(412).header("content-length", "0");
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    let stale = store
        .put(
            "apple",
            "x",
            PutOptions::new().if_generation_match(1_750_707_679_010_223),
        )
        .await
        .unwrap_err();
    let exists = store
        .put("apple", "x", PutOptions::new().mode(WriteMode::Add))
        .await
        .unwrap_err();
    let delete = store
        .delete(
            "apple",
            // As go-fastly sent it (recorded): no `force`.
            DeleteOptions::new()
                .force(false)
                .if_generation_match(1_750_707_679_477_774),
        )
        .await
        .unwrap_err();
    for error in [stale, exists, delete] {
        assert!(error.is_precondition_failed(), "{error:?}");
        let Error::Api(api) = &error else {
            panic!("{error:?}")
        };
        assert!(api.errors.is_empty() && api.excerpt.is_none());
    }
}

#[tokio::test]
async fn delete_sends_force() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/apple23?force=true"))
                .header_missing("if-generation-match");
            then.status(204);
        })
        .await;
    fastly_client(&server)
        .store(FASTLY_STORE)
        .delete("apple23", DeleteOptions::new().force(true))
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn a_3_mib_value_streams_up_and_down_intact() {
    const LEN: usize = 3 * 1024 * 1024;
    let server = MockServer::start_async().await;
    let value: Vec<u8> = (0..LEN).map(|i| (i * 7 % 253) as u8).collect();
    let expected = value.clone();
    let upload = server
        .mock_async(|when, then| {
            exact(when, "PUT", &fastly_path("/keys/big"))
                .is_true(move |req| req.body_ref() == expected.as_slice());
            then.status(200);
        })
        .await;
    let download = server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path("/keys/big"));
            then.status(200)
                .header("generation", "1")
                .body(value.clone());
        })
        .await;
    let source = Bytes::from(value.clone());
    let chunks = futures_util::stream::iter((0..LEN).step_by(64 * 1024)).map(move |start| {
        Ok::<_, std::io::Error>(source.slice(start..(start + 64 * 1024).min(LEN)))
    });
    let store = fastly_client(&server).store(FASTLY_STORE);
    store
        .put(
            "big",
            Body::from_stream(chunks, Some(LEN as u64)),
            PutOptions::new(),
        )
        .await
        .unwrap();
    upload.assert_async().await;

    let mut stream = store.get("big").await.unwrap().unwrap().into_body();
    let (mut received, mut pieces) = (Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        received.extend_from_slice(&chunk.unwrap());
        pieces += 1;
    }
    download.assert_async().await;
    assert!(received == value, "the downloaded bytes differ");
    assert!(pieces > 1, "the value arrived in one piece: not streamed");
}

#[tokio::test]
async fn every_key_reaches_its_own_path() {
    let server = MockServer::start_async().await;
    let cases = [
        ("a/b", "a%2Fb"),
        ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87"),
        ("a b/c", "a%20b%2Fc"),
    ];
    let mut mocks = Vec::new();
    for (key, encoded) in cases {
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "GET", &fastly_path(&format!("/keys/{encoded}")));
                    then.status(200).header("generation", "1").body(key);
                })
                .await,
        );
    }
    let store = fastly_client(&server).store(FASTLY_STORE);
    for (key, _) in cases {
        assert_eq!(
            store
                .get(key)
                .await
                .unwrap()
                .unwrap()
                .bytes()
                .await
                .unwrap(),
            key
        );
    }
    for mock in mocks {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn every_local_check_is_refused_without_a_request() {
    let server = MockServer::start_async().await;
    let any = server
        .mock_async(|when, then| {
            when.any_request();
            then.status(200);
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    let refused = |result: Result<(), Error>| match result {
        Err(Error::InvalidInput(input)) => input,
        other => panic!("expected a local refusal, got {other:?}"),
    };
    let bad_keys = [
        String::new(),
        ".".into(),
        "..".into(),
        "k".repeat(limits::MAX_KEY_BYTES + 1),
        ".well-known/acme-challenge/token".into(),
        "line\nfeed".into(),
        "carriage\rreturn".into(),
        "bell\u{7}".into(),
    ];
    for key in &bad_keys {
        refused(store.get(key).await.map(drop));
        refused(store.put(key, "v", PutOptions::new()).await);
        refused(store.delete(key, DeleteOptions::new()).await);
    }
    assert_eq!(
        refused(
            store
                .put("k", "v", PutOptions::new().metadata("m".repeat(2001)))
                .await
        ),
        InvalidInput::MetadataTooLarge {
            len: 2001,
            max: 2000
        }
    );
    assert_eq!(
        refused(
            store
                .put("k", "v", PutOptions::new().metadata("a\nb"))
                .await
        ),
        InvalidInput::MetadataNotHeaderValue
    );
    let too_big = limits::MAX_VALUE_BYTES + 1;
    let never_read = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
    assert_eq!(
        refused(
            store
                .put(
                    "k",
                    Body::from_stream(never_read, Some(too_big)),
                    PutOptions::new()
                )
                .await
        ),
        InvalidInput::ValueTooLarge {
            len: too_big,
            max: 25_000_000
        }
    );
    any.assert_calls_async(0).await;
}

#[tokio::test]
async fn create_answers_201_and_deleting_a_full_store_is_a_conflict() {
    let server = MockServer::start_async().await;
    let create = server
        .mock_async(|when, then| {
            exact(when, "POST", "/resources/stores/kv?location=EU")
                .header("fastly-key", FASTLY_TOKEN)
                .json_body(serde_json::json!({"name": "TestClient_CreateKVStoresWithLocations_EU"}));
            then.status(201).header("content-type", "application/json").body(
                r#"{"id":"x2by6k4r9xjh9pcvy7dcgk","name":"TestClient_CreateKVStoresWithLocations_EU","created_at":"2025-06-23 19:41:15","updated_at":"2025-06-23 19:41:15"}"#,
            );
        })
        .await;
    let delete = server
        .mock_async(|when, then| {
            exact(
                when,
                "DELETE",
                "/resources/stores/kv/x2by6k4r9xjh9pcvy7dcgk",
            );
            then.status(409);
        })
        .await;
    let client = fastly_client(&server);
    let store = client
        .create_store(
            "TestClient_CreateKVStoresWithLocations_EU",
            Some(edgekv::fastly::Location::Eu),
        )
        .await
        .unwrap();
    assert_eq!(store.id, "x2by6k4r9xjh9pcvy7dcgk");
    assert_eq!(store.created_at.as_deref(), Some("2025-06-23 19:41:15"));
    let error = client.delete_store(&store.id).await.unwrap_err();
    assert!(error.is_conflict(), "{error:?}");
    create.assert_async().await;
    delete.assert_async().await;
}

#[tokio::test]
async fn an_unlisted_error_status_keeps_an_excerpt_of_its_body() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &fastly_path(""));
            then.status(500)
                .header("content-type", "application/json")
                .body(r#"{"msg":"Internal error","detail":"try later"}"#);
        })
        .await;
    let error = fastly_client(&server)
        .get_store(FASTLY_STORE)
        .await
        .unwrap_err();
    let Error::Api(api) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(api.status, 500);
    assert!(api.excerpt.as_deref().unwrap().contains("try later"));
}

/// An unconditional delete sends `force` (a missing item is fine, as on Cloudflare); a
/// conditional one does not, as go-fastly's recorded conditional delete shows, so a missing
/// item is a 404 error there.
#[tokio::test]
async fn only_an_unconditional_delete_is_forced() {
    let server = MockServer::start_async().await;
    let forced = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/gone?force=true"));
            then.status(204);
        })
        .await;
    let conditional = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &fastly_path("/keys/gone")).header("if-generation-match", "7");
            then.status(404);
        })
        .await;
    let store = fastly_client(&server).store(FASTLY_STORE);
    store.delete("gone", DeleteOptions::new()).await.unwrap();
    let error = store
        .delete("gone", DeleteOptions::new().if_generation_match(7))
        .await
        .unwrap_err();
    assert!(error.is_not_found(), "{error:?}");
    assert_eq!(
        (forced.calls_async().await, conditional.calls_async().await),
        (1, 1)
    );
}
