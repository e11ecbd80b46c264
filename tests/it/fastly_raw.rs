//! The generated Fastly client (`edgekv::fastly::raw`): exact requests and decoded responses for
//! every generated operation, and every recorded live interaction replayed through it.

use edgekv::fastly::raw::types::{
    KvStoreConsistency, KvStoreLocation, KvStoreRequestCreateOrUpdate,
};
use edgekv::fastly::raw::{Error, types};
use httpmock::MockServer;

use crate::support;
use crate::support::{FASTLY_TOKEN, Replay, Replayed, collect, exact, fastly};

/// A generation seen live: above 2^32, so it must travel as u64.
const LIVE_GENERATION: u64 = 1_750_707_676_353_461;

fn status_of<E>(error: &Error<E>) -> Option<u16> {
    error.status().map(|s| s.as_u16())
}

#[tokio::test]
async fn list_stores_sends_every_query_parameter_and_decodes_a_recorded_page() {
    let server = MockServer::start_async().await;
    let recorded = &support::fastly_cassettes()
        .into_iter()
        .find(|(name, _)| name == "history/list-store@f165e8c0.yaml")
        .unwrap()
        .1
        .interactions[0]
        .response
        .body
        .clone();
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                "/resources/stores/kv?cursor=c1&limit=2&name=my+store",
            )
            .header("fastly-key", FASTLY_TOKEN);
            then.status(200)
                .header("content-type", "application/json")
                .body(recorded);
        })
        .await;

    let page = fastly(&server)
        .kv_store_list(Some("c1"), Some(2.try_into().unwrap()), Some("my store"))
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    let expected: serde_json::Value = serde_json::from_str(recorded).unwrap();
    assert_eq!(page.data.len(), expected["data"].as_array().unwrap().len());
    assert_eq!(page.data[0].id.as_deref(), Some("6nf0xnixc9ergkjzy88cjz"));
    assert_eq!(page.data[0].name.as_deref(), Some("bulk_import_testing"));
    assert_eq!(serde_json::to_value(&page).unwrap(), expected);
}

#[tokio::test]
async fn create_store_posts_json_with_location_and_reads_201() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "POST", "/resources/stores/kv?location=EU")
                .header("fastly-key", FASTLY_TOKEN)
                .header("content-type", "application/json")
                .json_body(serde_json::json!({"name": "TestClient_CreateKVStoresWithLocations_EU"}));
            then.status(201).header("content-type", "application/json").body(
                r#"{"id":"x2by6k4r9xjh9pcvy7dcgk","name":"TestClient_CreateKVStoresWithLocations_EU","created_at":"2025-06-23 19:41:15","updated_at":"2025-06-23 19:41:15"}"#,
            );
        })
        .await;

    let body = KvStoreRequestCreateOrUpdate {
        name: "TestClient_CreateKVStoresWithLocations_EU".into(),
    };
    let created = fastly(&server)
        .kv_store_create(Some(KvStoreLocation::Eu), &body)
        .await
        .unwrap();

    mock.assert_async().await;
    assert_eq!(created.status(), 201);
    let store = created.into_inner();
    assert_eq!(store.id.as_deref(), Some("x2by6k4r9xjh9pcvy7dcgk"));
    assert_eq!(store.created_at.as_deref(), Some("2025-06-23 19:41:15"));
}

#[tokio::test]
async fn create_store_with_a_taken_name_is_a_400_error() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "POST", "/resources/stores/kv");
            then.status(400)
                .body(r#"{"msg":"Bad request","detail":"name already exists"}"#);
        })
        .await;
    let body = KvStoreRequestCreateOrUpdate {
        name: "taken".into(),
    };
    let error = fastly(&server)
        .kv_store_create(None, &body)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ErrorResponse(_)), "{error:?}");
    assert_eq!(status_of(&error), Some(400));
}

#[tokio::test]
async fn get_store_decodes_details_and_404_is_an_error() {
    let server = MockServer::start_async().await;
    let found = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv/iaa48y0oxw13s12xpfdkk9").header("fastly-key", FASTLY_TOKEN);
            then.status(200).header("content-type", "application/json").body(
                r#"{"id":"iaa48y0oxw13s12xpfdkk9","name":"kv-store-test-store","created_at":"2025-06-23 19:41:15","updated_at":"2025-06-23 19:41:15"}"#,
            );
        })
        .await;
    let missing = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv/nope");
            then.status(404);
        })
        .await;

    let client = fastly(&server);
    let store = client
        .kv_store_get("iaa48y0oxw13s12xpfdkk9")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(store.name.as_deref(), Some("kv-store-test-store"));
    let error = client.kv_store_get("nope").await.unwrap_err();
    assert_eq!(status_of(&error), Some(404));
    found.assert_async().await;
    missing.assert_async().await;
}

#[tokio::test]
async fn rename_store_puts_the_new_name() {
    let server = MockServer::start_async().await;
    let renamed = server
        .mock_async(|when, then| {
            exact(when, "PUT", "/resources/stores/kv/s1")
                .header("content-type", "application/json")
                .json_body(serde_json::json!({"name": "renamed"}));
            then.status(200);
        })
        .await;
    let missing = server
        .mock_async(|when, then| {
            exact(when, "PUT", "/resources/stores/kv/gone");
            then.status(404);
        })
        .await;

    let client = fastly(&server);
    let body = KvStoreRequestCreateOrUpdate {
        name: "renamed".into(),
    };
    assert_eq!(
        client.kv_store_put("s1", &body).await.unwrap().status(),
        200
    );
    assert_eq!(
        status_of(&client.kv_store_put("gone", &body).await.unwrap_err()),
        Some(404)
    );
    renamed.assert_async().await;
    missing.assert_async().await;
}

#[tokio::test]
async fn delete_store_answers_204_and_409_when_not_empty() {
    let server = MockServer::start_async().await;
    let emptied = server
        .mock_async(|when, then| {
            exact(when, "DELETE", "/resources/stores/kv/empty").header("fastly-key", FASTLY_TOKEN);
            then.status(204);
        })
        .await;
    let full = server
        .mock_async(|when, then| {
            exact(when, "DELETE", "/resources/stores/kv/full");
            then.status(409);
        })
        .await;

    let client = fastly(&server);
    assert_eq!(client.kv_store_delete("empty").await.unwrap().status(), 204);
    let error = client.kv_store_delete("full").await.unwrap_err();
    assert!(matches!(error, Error::ErrorResponse(_)));
    assert_eq!(status_of(&error), Some(409));
    emptied.assert_async().await;
    full.assert_async().await;
}

#[tokio::test]
async fn list_keys_encodes_a_padded_cursor_and_reads_the_last_page() {
    let server = MockServer::start_async().await;
    // The recorded cursor of an older live listing ends in `==`.
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                "/resources/stores/kv/s1/keys?consistency=eventual&cursor=CgtkcmFnb25mcnVpdA%3D%3D&limit=4&prefix=a%2Fb+c",
            );
            then.status(200)
                .header("content-type", "application/json")
                .body(r#"{"data":["eggplant"],"meta":{"limit":4}}"#);
        })
        .await;

    let page = fastly(&server)
        .kv_store_list_item_keys(
            "s1",
            Some(KvStoreConsistency::Eventual),
            Some("CgtkcmFnb25mcnVpdA=="),
            Some(4.try_into().unwrap()),
            Some("a/b c"),
        )
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    assert_eq!(page.data, vec!["eggplant".to_string()]);
    assert_eq!(page.meta.next_cursor, None);
    assert_eq!(page.meta.limit, Some(4));
}

#[tokio::test]
async fn list_keys_of_a_missing_store_is_a_404_error() {
    let server = MockServer::start_async().await;
    // httpmock answers an unmatched request 404 too: the mock's count shows the path was right.
    let mock = server
        .mock_async(|when, then| {
            exact(when, "GET", "/resources/stores/kv/gone/keys");
            then.status(404);
        })
        .await;
    let error = fastly(&server)
        .kv_store_list_item_keys("gone", None, None, None, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&error), Some(404));
    mock.assert_async().await;
}

#[tokio::test]
async fn get_item_returns_raw_bytes_and_the_generation_and_metadata_headers() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            // `a b/c` must stay one key: space and slash are percent-encoded, not form-encoded.
            exact(when, "GET", "/resources/stores/kv/s1/keys/a%20b%2Fc")
                .header("fastly-key", FASTLY_TOKEN);
            then.status(200)
                .header("content-type", "application/octet-stream")
                .header("generation", LIVE_GENERATION.to_string())
                .header("metadata", "colour=green")
                .body("apple0");
        })
        .await;

    let response = fastly(&server)
        .kv_store_get_item("s1", "a b/c")
        .await
        .unwrap();

    mock.assert_async().await;
    let generation: u64 = response.headers()["generation"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(generation, LIVE_GENERATION);
    assert_eq!(response.headers()["metadata"], "colour=green");
    let bytes = collect(response.into_inner()).await;
    assert_eq!(bytes, b"apple0");
}

#[tokio::test]
async fn get_item_encodes_non_ascii_keys_and_404_is_an_error() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                "/resources/stores/kv/s1/keys/%D0%BA%D0%BB%D1%8E%D1%87",
            );
            then.status(404);
        })
        .await;
    let Err(error) = fastly(&server).kv_store_get_item("s1", "ключ").await else {
        panic!("a 404 must be an error");
    };
    mock.assert_async().await;
    assert_eq!(status_of(&error), Some(404));
}

#[tokio::test]
async fn upsert_item_sends_every_option_and_the_raw_body() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "PUT",
                "/resources/stores/kv/s1/keys/apple?add=false&append=true&background_fetch=true&prepend=false",
            )
            .header("fastly-key", FASTLY_TOKEN)
            .header("content-type", "application/octet-stream")
            .header("if-generation-match", LIVE_GENERATION.to_string())
            .header("metadata", "m=1")
            .header("time_to_live_sec", "3600")
            .body("suffix");
            then.status(200).header("content-length", "0");
        })
        .await;

    let response = fastly(&server)
        .kv_store_upsert_item(
            "s1",
            "apple",
            Some(false),
            Some(true),
            Some(true),
            Some(false),
            Some(LIVE_GENERATION),
            Some("m=1"),
            Some(3600),
            "suffix",
        )
        .await
        .unwrap();

    mock.assert_async().await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn upsert_item_with_a_stale_generation_is_a_412_with_an_empty_body() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", "/resources/stores/kv/s1/keys/apple")
                .header("if-generation-match", "1750707679010223");
            then.status(412).header("content-length", "0");
        })
        .await;
    let error = fastly(&server)
        .kv_store_upsert_item(
            "s1",
            "apple",
            None,
            None,
            None,
            None,
            Some(1_750_707_679_010_223),
            None,
            None,
            "",
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ErrorResponse(_)));
    assert_eq!(status_of(&error), Some(412));
}

#[tokio::test]
async fn upsert_item_answers_400_and_404_as_errors() {
    let server = MockServer::start_async().await;
    let mut mocks = Vec::new();
    for (store, status) in [("bad", 400), ("gone", 404)] {
        mocks.push(
            server
                .mock_async(|when, then| {
                    exact(when, "PUT", &format!("/resources/stores/kv/{store}/keys/k"));
                    then.status(status);
                })
                .await,
        );
    }
    let client = fastly(&server);
    for (store, status) in [("bad", 400), ("gone", 404)] {
        let error = client
            .kv_store_upsert_item(store, "k", None, None, None, None, None, None, None, "v")
            .await;
        assert_eq!(status_of(&error.unwrap_err()), Some(status));
    }
    // httpmock answers an unmatched request 404 too: the counts show each path was right.
    for mock in mocks {
        mock.assert_async().await;
    }
}

#[tokio::test]
async fn delete_item_sends_force_and_generation_and_maps_each_status() {
    let server = MockServer::start_async().await;
    let deleted = server
        .mock_async(|when, then| {
            exact(
                when,
                "DELETE",
                "/resources/stores/kv/s1/keys/apple23?force=true",
            )
            .header_missing("if-generation-match");
            then.status(204);
        })
        .await;
    let conflict = server
        .mock_async(|when, then| {
            exact(when, "DELETE", "/resources/stores/kv/s1/keys/apple")
                .header("if-generation-match", "7");
            then.status(412);
        })
        .await;
    let missing = server
        .mock_async(|when, then| {
            exact(when, "DELETE", "/resources/stores/kv/s1/keys/nothing");
            then.status(404);
        })
        .await;

    let client = fastly(&server);
    assert_eq!(
        client
            .kv_store_delete_item("s1", "apple23", Some(true), None)
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        status_of(
            &client
                .kv_store_delete_item("s1", "apple", None, Some(7))
                .await
                .unwrap_err()
        ),
        Some(412)
    );
    assert_eq!(
        status_of(
            &client
                .kv_store_delete_item("s1", "nothing", None, None)
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    deleted.assert_async().await;
    conflict.assert_async().await;
    missing.assert_async().await;
}

#[test]
fn a_token_that_cannot_be_a_header_is_refused_when_the_transport_is_built() {
    let error = edgekv::transport::Transport::new(edgekv::transport::Credential::FastlyToken(
        "bad\ntoken".into(),
    ))
    .unwrap_err();
    assert_eq!(
        error,
        edgekv::error::InvalidInput::Credential {
            header: "Fastly-Key"
        }
    );
    assert!(!format!("{error:?} {error}").contains("bad\ntoken"));
}

/// Every interaction go-fastly recorded against the live API, served back by a mock that only
/// answers the recorded method, path and query: each call the generated client makes must match
/// it, and each recorded JSON body must decode into the generated types without losing a field.
#[tokio::test]
async fn every_recorded_interaction_replays_through_the_raw_client() {
    support::replay_every_recording(replay).await;
}

async fn replay(recording: &Replay<'_>) -> Replayed {
    let (request, response) = (recording.request, recording.response);
    let context = recording.context.as_str();
    let client = fastly(recording.server);
    let query = |name: &str| recording.query(name);
    let flag = |name: &str| query(name).map(|v| v == "true");
    let generation = recording.generation();
    let expect_ok = recording.succeeded();
    let segments = recording.segments();

    // What the generated client decoded, re-serialized, for JSON responses.
    let decoded: Option<serde_json::Value> = match (request.method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let limit = query("limit").map(|l| l.parse().unwrap());
            outcome(
                client
                    .kv_store_list(query("cursor").as_deref(), limit, query("name").as_deref())
                    .await,
                expect_ok,
                context,
            )
            .map(|v| serde_json::to_value(v.into_inner()).unwrap())
        }
        ("POST", []) => {
            let body: types::KvStoreRequestCreateOrUpdate =
                serde_json::from_str(&request.body).unwrap();
            let location = query("location").map(|l| l.parse::<KvStoreLocation>().unwrap());
            outcome(
                client.kv_store_create(location, &body).await,
                expect_ok,
                context,
            )
            .map(|v| serde_json::to_value(v.into_inner()).unwrap())
        }
        ("GET", [store]) => outcome(client.kv_store_get(store).await, expect_ok, context)
            .map(|v| serde_json::to_value(v.into_inner()).unwrap()),
        ("DELETE", [store]) => {
            outcome(client.kv_store_delete(store).await, expect_ok, context);
            None
        }
        ("GET", [store, "keys"]) => {
            let consistency =
                query("consistency").map(|c| c.parse::<KvStoreConsistency>().unwrap());
            let limit = query("limit").map(|l| l.parse().unwrap());
            let page = client
                .kv_store_list_item_keys(
                    store,
                    consistency,
                    query("cursor").as_deref(),
                    limit,
                    query("prefix").as_deref(),
                )
                .await;
            outcome(page, expect_ok, context).map(|v| serde_json::to_value(v.into_inner()).unwrap())
        }
        ("GET", [store, "keys", key]) => {
            let value = outcome(
                client.kv_store_get_item(store, key).await,
                expect_ok,
                context,
            )
            .unwrap();
            assert_eq!(
                value.headers()["generation"],
                response.header("Generation").unwrap(),
                "{context}"
            );
            assert_eq!(
                collect(value.into_inner()).await,
                response.body.as_bytes(),
                "{context}"
            );
            None
        }
        ("PUT", [store, "keys", key]) => {
            let upsert = client
                .kv_store_upsert_item(
                    store,
                    key,
                    flag("add"),
                    flag("append"),
                    None,
                    flag("prepend"),
                    generation,
                    None,
                    None,
                    request.body.clone(),
                )
                .await;
            outcome(upsert, expect_ok, context);
            None
        }
        ("DELETE", [store, "keys", key]) => {
            outcome(
                client
                    .kv_store_delete_item(store, key, flag("force"), generation)
                    .await,
                expect_ok,
                context,
            );
            None
        }
        ("PUT", [_, "batch"]) => {
            // Hand-written in the facade (progenitor takes no ndjson); its response type is generated.
            let batch: types::KvStoreBatchResponse = serde_json::from_str(&response.body).unwrap();
            assert!(batch.errors.is_empty(), "{context}");
            assert_eq!(batch.title.as_deref(), Some("success"));
            return Replayed::NotSent;
        }
        other => panic!("{context}: no generated operation for {other:?}"),
    };
    if let Some(decoded) = decoded {
        let recorded: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(
            decoded, recorded,
            "{context}: a recorded field was lost or changed in decoding"
        );
    }
    Replayed::Sent
}

/// Unwraps a generated call's result as the recording says it ended.
fn outcome<T>(
    result: Result<edgekv::fastly::raw::ResponseValue<T>, Error<()>>,
    expect_ok: bool,
    context: &str,
) -> Option<edgekv::fastly::raw::ResponseValue<T>> {
    match result {
        Ok(value) if expect_ok => Some(value),
        Err(Error::ErrorResponse(_)) if !expect_ok => None,
        Ok(value) => panic!("{context}: unexpected success {}", value.status()),
        Err(error) => panic!("{context}: unexpected error {error}"),
    }
}
