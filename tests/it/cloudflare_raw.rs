//! The generated Cloudflare client (`edgekv::cloudflare::raw`): exact requests and decoded
//! responses for every generated operation, with the seeds' examples and cloudflare-go's bodies.

use edgekv::cloudflare::raw::types::{
    BulkDelete, BulkGetRequest, BulkGetResult, BulkGetType, BulkWrite, BulkWriteItem, Direction,
    NamespaceOrder, NamespaceTitle,
};
use edgekv::cloudflare::raw::{Error, types};
use edgekv::transport::{Credential, Transport};
use httpmock::MockServer;
use serde_json::json;

use crate::support;
use crate::support::envelope::{
    cf_failure, cf_failures, cf_key_not_found, cf_namespace_not_found, cf_ok, cf_page,
};
use crate::support::{
    CF_ACCOUNT, CF_BEARER, CF_NAMESPACE, CLOUDFLARE_TOKEN, cf_path, cloudflare, exact,
};

fn failure(error: Error<types::Failure>) -> (u16, types::Failure) {
    match error {
        Error::ErrorResponse(response) => (response.status().as_u16(), response.into_inner()),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn namespace_list_sends_paging_and_ordering_and_decodes_result_info() {
    let server = MockServer::start_async().await;
    let body = support::cloudflare_go_body(
        "TestWorkersKV_ListWorkersKVNamespaceMultiplePages",
        "response2",
    );
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                &format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces?direction=desc&order=title&page=2&per_page=100"),
            )
            .header("authorization", CF_BEARER);
            then.status(200).json_body(body.clone());
        })
        .await;

    let page = cloudflare(&server)
        .namespace_list(
            CF_ACCOUNT,
            Some(Direction::Desc),
            Some(NamespaceOrder::Title),
            Some(2.try_into().unwrap()),
            Some(100),
        )
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    assert!(page.success);
    assert_eq!(page.result.len(), 1);
    assert_eq!(page.result[0].title, "test_namespace_2");
    let info = page.result_info.unwrap();
    assert_eq!(
        (info.page, info.per_page, info.total_count, info.total_pages),
        (Some(2), Some(100), Some(2), Some(2))
    );
    assert_eq!(
        serde_json::to_value(cloudflare_page_roundtrip(&body)).unwrap(),
        body
    );
}

fn cloudflare_page_roundtrip(body: &serde_json::Value) -> types::NamespaceListResponse {
    serde_json::from_value(body.clone()).unwrap()
}

#[tokio::test]
async fn namespace_create_posts_the_title_and_returns_the_namespace() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "POST", &format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces"))
                .header("authorization", CF_BEARER)
                .header("content-type", "application/json")
                .json_body(json!({"title": "My Own Namespace"}));
            then.status(200).json_body(cf_ok(
                json!({"id": CF_NAMESPACE, "title": "My Own Namespace", "supports_url_encoding": true}),
            ));
        })
        .await;

    let body = NamespaceTitle {
        title: "My Own Namespace".into(),
    };
    let created = cloudflare(&server)
        .namespace_create(CF_ACCOUNT, &body)
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    let namespace = created.result.unwrap();
    assert_eq!(
        (namespace.id.as_str(), namespace.supports_url_encoding),
        (CF_NAMESPACE, Some(true))
    );
}

#[tokio::test]
async fn namespace_create_with_a_taken_title_decodes_every_error() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(
                when,
                "POST",
                &format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces"),
            );
            let mut body = cf_failures(&[
                (
                    10014,
                    "a namespace with this account ID and title already exists",
                ),
                (10000, "Authentication error"),
            ]);
            body["errors"][1]["documentation_url"] = json!("https://example.invalid/doc");
            body["errors"][1]["source"] = json!({"pointer": "/title"});
            then.status(400).json_body(body);
        })
        .await;

    let body = NamespaceTitle {
        title: "taken".into(),
    };
    let (status, failure) = failure(
        cloudflare(&server)
            .namespace_create(CF_ACCOUNT, &body)
            .await
            .unwrap_err(),
    );

    assert_eq!(status, 400);
    assert!(!failure.success);
    let codes: Vec<i64> = failure.errors.iter().map(|e| e.code).collect();
    assert_eq!(codes, [10014, 10000]);
    assert_eq!(
        failure.errors[1]
            .source
            .as_ref()
            .unwrap()
            .pointer
            .as_deref(),
        Some("/title")
    );
}

#[tokio::test]
async fn namespace_get_rename_and_delete() {
    let server = MockServer::start_async().await;
    let namespace =
        json!({"id": CF_NAMESPACE, "title": "My Own Namespace", "supports_url_encoding": true});
    let get = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("")).header("authorization", CF_BEARER);
            then.status(200).json_body(cf_ok(namespace));
        })
        .await;
    let rename = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("")).json_body(json!({"title": "Renamed"}));
            then.status(200).json_body(cf_ok(
                json!({"id": CF_NAMESPACE, "title": "Renamed", "supports_url_encoding": true}),
            ));
        })
        .await;
    let delete = server
        .mock_async(|when, then| {
            // No body on DELETE (the upstream schema's required JSON body is not sent by anyone).
            exact(when, "DELETE", &cf_path("")).header_missing("content-type");
            then.status(200).json_body(support::cloudflare_go_body(
                "TestWorkersKV_DeleteWorkersKVNamespace",
                "response",
            ));
        })
        .await;

    let client = cloudflare(&server);
    assert_eq!(
        client
            .namespace_get(CF_ACCOUNT, CF_NAMESPACE)
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap()
            .title,
        "My Own Namespace"
    );
    let renamed = client
        .namespace_rename(
            CF_ACCOUNT,
            CF_NAMESPACE,
            &NamespaceTitle {
                title: "Renamed".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.into_inner().result.unwrap().title, "Renamed");
    let deleted = client
        .namespace_delete(CF_ACCOUNT, CF_NAMESPACE)
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.success && deleted.result.is_none());
    get.assert_async().await;
    rename.assert_async().await;
    delete.assert_async().await;
}

#[tokio::test]
async fn namespace_get_of_a_missing_namespace_is_an_error_with_its_code() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(404).json_body(cf_namespace_not_found());
        })
        .await;
    let (status, failure) = failure(
        cloudflare(&server)
            .namespace_get(CF_ACCOUNT, CF_NAMESPACE)
            .await
            .unwrap_err(),
    );
    assert_eq!((status, failure.errors[0].code), (404, 10013));
}

#[tokio::test]
async fn keys_list_sends_limit_prefix_and_cursor_and_decodes_full_keys() {
    let server = MockServer::start_async().await;
    let body = support::cloudflare_go_body("TestWorkersKV_ListKeysWithParameters", "response");
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                &cf_path("/keys?cursor=a%2Bb%3D&limit=10&prefix=user%2F1+2"),
            );
            then.status(200).json_body(body.clone());
        })
        .await;

    let page = cloudflare(&server)
        .keys_list(
            CF_ACCOUNT,
            CF_NAMESPACE,
            Some("a+b="),
            Some(10),
            Some("user/1 2"),
        )
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    assert_eq!(page.result[0].name, "test_key_1");
    // Metadata is any JSON: a string here, an object for the next key.
    assert_eq!(page.result[0].metadata, Some(json!("test_key_1_meta")));
    assert_eq!(
        page.result[1].metadata,
        Some(json!({"test2_meta_key": "test2_meta_value"}))
    );
    assert!(
        page.result_info
            .unwrap()
            .cursor
            .unwrap()
            .starts_with("AArAbNSOuYcr")
    );
}

#[tokio::test]
async fn keys_list_decodes_the_seed_example_with_expiration() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/keys"));
            then.status(200).json_body(cf_page(
                json!([{"name": "My-Key", "expiration": 1577836800, "metadata": {}}]),
                json!({"count": 1, "cursor": "6Ck1la0VxJ0djhidm1MdX2FyDGxLKVeeHZZmORS_8XeSuhz9SjIJRaSa2lnsF01tQOHrfTGAP3R5X1Kv5iVUuMbNKhWNAXHOl6ePB0TUL8nw"}),
            ));
        })
        .await;
    let page = cloudflare(&server)
        .keys_list(CF_ACCOUNT, CF_NAMESPACE, None, None, None)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.result[0].expiration, Some(1_577_836_800));
    assert_eq!(page.result_info.unwrap().count, Some(1));
}

#[tokio::test]
async fn value_get_returns_raw_bytes_and_the_expiration_header() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            // `a/b?c#d 100%` stays one path segment.
            exact(when, "GET", &cf_path("/values/a%2Fb%3Fc%23d%20100%25"))
                .header("authorization", CF_BEARER);
            then.status(200)
                .header("content-type", "application/octet-stream")
                .header("expiration", "1578435000")
                .body(b"\x00\xffbinary");
        })
        .await;

    let Ok(value) = cloudflare(&server)
        .value_get(CF_ACCOUNT, CF_NAMESPACE, "a/b?c#d 100%")
        .await
    else {
        panic!("value_get failed");
    };

    mock.assert_async().await;
    assert_eq!(value.headers()["expiration"], "1578435000");
    assert_eq!(
        support::collect(value.into_inner()).await,
        b"\x00\xffbinary"
    );
}

#[tokio::test]
async fn value_get_of_a_missing_key_is_a_404_with_code_10009() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/%D0%BA%D0%BB%D1%8E%D1%87"));
            then.status(404).json_body(cf_key_not_found());
        })
        .await;
    let Err(error) = cloudflare(&server)
        .value_get(CF_ACCOUNT, CF_NAMESPACE, "ключ")
        .await
    else {
        panic!("a 404 must be an error");
    };
    let (status, failure) = failure(error);
    assert_eq!((status, failure.errors[0].code), (404, 10009));
}

#[tokio::test]
async fn value_put_sends_the_raw_body_and_both_expirations() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(
                when,
                "PUT",
                &cf_path("/values/My-Key?expiration=1578435000&expiration_ttl=300"),
            )
            .header("authorization", CF_BEARER)
            .header("content-type", "application/octet-stream")
            .body("Some Value");
            then.status(200).json_body(support::cloudflare_go_body(
                "TestWorkersKV_WriteWorkersKVEntry",
                "response",
            ));
        })
        .await;

    let written = cloudflare(&server)
        .value_put(
            CF_ACCOUNT,
            CF_NAMESPACE,
            "My-Key",
            Some(1_578_435_000),
            Some(300),
            "Some Value",
        )
        .await
        .unwrap()
        .into_inner();

    mock.assert_async().await;
    assert!(written.success);
}

#[tokio::test]
async fn value_put_rejected_by_the_service_is_an_error() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/values/k?expiration_ttl=1"));
            then.status(400).json_body(cf_failure(
                10020,
                "Invalid expiration_ttl of 1. Expiration TTL must be at least 60.",
            ));
        })
        .await;
    let error = cloudflare(&server)
        .value_put(CF_ACCOUNT, CF_NAMESPACE, "k", None, Some(1), "v")
        .await
        .unwrap_err();
    assert_eq!(failure(error).0, 400);
}

#[tokio::test]
async fn value_delete_and_metadata_get() {
    let server = MockServer::start_async().await;
    let delete = server
        .mock_async(|when, then| {
            exact(when, "DELETE", &cf_path("/values/My-Key")).header("authorization", CF_BEARER);
            then.status(200).json_body(support::cloudflare_go_body(
                "TestWorkersKV_DeleteWorkersKVEntry",
                "response",
            ));
        })
        .await;
    let metadata = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/metadata/My-Key"));
            then.status(200)
                .json_body(cf_ok(json!({"someMetadataKey": "someMetadataValue"})));
        })
        .await;
    let missing = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/metadata/gone"));
            then.status(404).json_body(cf_key_not_found());
        })
        .await;

    let client = cloudflare(&server);
    assert!(
        client
            .value_delete(CF_ACCOUNT, CF_NAMESPACE, "My-Key")
            .await
            .unwrap()
            .into_inner()
            .success
    );
    let found = client
        .metadata_get(CF_ACCOUNT, CF_NAMESPACE, "My-Key")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.result,
        Some(json!({"someMetadataKey": "someMetadataValue"}))
    );
    let (status, failure) = failure(
        client
            .metadata_get(CF_ACCOUNT, CF_NAMESPACE, "gone")
            .await
            .unwrap_err(),
    );
    assert_eq!((status, failure.errors[0].code), (404, 10009));
    delete.assert_async().await;
    metadata.assert_async().await;
    missing.assert_async().await;
}

#[tokio::test]
async fn bulk_write_sends_every_field_and_reads_unsuccessful_keys() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk")).header("content-type", "application/json").json_body(json!([
                {"key": "My-Key", "value": "Some string", "expiration_ttl": 300, "metadata": {"a": 1}},
                {"key": "bin", "value": "AP8=", "base64": true, "expiration": 1578435000}
            ]));
            then.status(200).json_body(cf_ok(
                json!({"successful_key_count": 1, "unsuccessful_keys": ["bin"]}),
            ));
        })
        .await;

    let body = BulkWrite(vec![
        BulkWriteItem {
            key: "My-Key".into(),
            value: "Some string".into(),
            expiration_ttl: Some(300),
            metadata: Some(json!({"a": 1})),
            base64: None,
            expiration: None,
        },
        BulkWriteItem {
            key: "bin".into(),
            value: "AP8=".into(),
            base64: Some(true),
            expiration: Some(1_578_435_000),
            expiration_ttl: None,
            metadata: None,
        },
    ]);
    let result = cloudflare(&server)
        .bulk_write(CF_ACCOUNT, CF_NAMESPACE, &body)
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();

    mock.assert_async().await;
    assert_eq!(result.successful_key_count, Some(1));
    assert_eq!(result.unsuccessful_keys, ["bin"]);
}

#[tokio::test]
async fn bulk_write_with_a_null_result_decodes() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/bulk"));
            then.status(200).json_body(support::cloudflare_go_body(
                "TestWorkersKV_WriteWorkersKVEntries",
                "response",
            ));
        })
        .await;
    let response = cloudflare(&server)
        .bulk_write(CF_ACCOUNT, CF_NAMESPACE, &BulkWrite(vec![]))
        .await
        .unwrap()
        .into_inner();
    assert!(response.success && response.result.is_none());
}

#[tokio::test]
async fn bulk_delete_posts_keys() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/delete")).json_body(json!(["My-Key", "a/b"]));
            then.status(200).json_body(cf_ok(
                json!({"successful_key_count": 2, "unsuccessful_keys": []}),
            ));
        })
        .await;
    let body = BulkDelete(vec!["My-Key".into(), "a/b".into()]);
    let result = cloudflare(&server)
        .bulk_delete(CF_ACCOUNT, CF_NAMESPACE, &body)
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    mock.assert_async().await;
    assert_eq!(result.successful_key_count, Some(2));
}

#[tokio::test]
async fn bulk_get_decodes_the_plain_shape() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/get"))
                .json_body(json!({"keys": ["key1", "key2", "gone"]}));
            then.status(200).json_body(cf_ok(
                json!({"values": {"key1": "value1", "key2": "value2", "gone": null}}),
            ));
        })
        .await;
    let body = BulkGetRequest {
        keys: vec!["key1".into(), "key2".into(), "gone".into()],
        type_: None,
        with_metadata: None,
    };
    let result = cloudflare(&server)
        .bulk_get(CF_ACCOUNT, CF_NAMESPACE, &body)
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    mock.assert_async().await;
    let BulkGetResult::Values(values) = result else {
        panic!("expected the plain shape: {result:?}")
    };
    assert_eq!(values.values["key1"], "value1");
    assert_eq!(values.values["gone"], serde_json::Value::Null);
}

#[tokio::test]
async fn bulk_get_decodes_the_shape_with_metadata() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "POST", &cf_path("/bulk/get"))
                .json_body(json!({"keys": ["key1", "gone"], "type": "json", "withMetadata": true}));
            then.status(200).json_body(cf_ok(json!({"values": {
                "key1": {"value": {"n": 1}, "metadata": {"m": true}, "expiration": 1578435000},
                "gone": null
            }})));
        })
        .await;
    let body = BulkGetRequest {
        keys: vec!["key1".into(), "gone".into()],
        type_: Some(BulkGetType::Json),
        with_metadata: Some(true),
    };
    let result = cloudflare(&server)
        .bulk_get(CF_ACCOUNT, CF_NAMESPACE, &body)
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    mock.assert_async().await;
    let BulkGetResult::WithMetadata(entries) = result else {
        panic!("expected the metadata shape: {result:?}")
    };
    let entry = entries.values["key1"].0.as_ref().unwrap();
    assert_eq!(
        (
            entry.value.clone(),
            entry.metadata.clone(),
            entry.expiration
        ),
        (json!({"n": 1}), json!({"m": true}), Some(1_578_435_000))
    );
    assert!(entries.values["gone"].0.is_none());
}

#[tokio::test]
async fn the_global_key_pair_is_sent_as_two_headers_and_no_bearer() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""))
                .header("x-auth-email", "user@example.com")
                .header("x-auth-key", "global-key")
                .header_missing("authorization");
            then.status(200)
                .json_body(cf_ok(json!({"id": CF_NAMESPACE, "title": "t"})));
        })
        .await;
    let transport = Transport::new(Credential::CloudflareGlobalKey {
        email: "user@example.com".into(),
        key: "global-key".into(),
    })
    .unwrap();
    let client = edgekv::cloudflare::raw::Client::new(&server.base_url(), transport.clone());
    client
        .namespace_get(CF_ACCOUNT, CF_NAMESPACE)
        .await
        .unwrap();
    mock.assert_async().await;
    let debug = format!("{transport:?} {client:?}");
    assert!(
        !debug.contains("global-key") && !debug.contains("user@example.com"),
        "{debug}"
    );
}

#[test]
fn debug_of_a_token_client_hides_the_token() {
    let transport = Transport::new(Credential::CloudflareToken(CLOUDFLARE_TOKEN.into())).unwrap();
    let client = edgekv::cloudflare::raw::Client::new("http://127.0.0.1:1", transport);
    assert!(!format!("{client:?}").contains(CLOUDFLARE_TOKEN));
}
