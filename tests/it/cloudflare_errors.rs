//! How the Cloudflare facade reports failure: envelopes, statuses, error codes, proxy pages.

use edgekv::Error;
use edgekv::cloudflare::PutOptions;
use edgekv::policy::RequestPolicy;
use httpmock::MockServer;
use serde_json::json;

use crate::support::envelope::{cf_failure, cf_failures, cf_namespace_not_found, cf_ok};
use crate::support::{CF_NAMESPACE, cf_path, cloudflare_at, cloudflare_client, exact};

#[tokio::test]
async fn a_successful_envelope_returns_its_result_and_keeps_its_messages() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            let mut body = cf_ok(
                json!({"id": CF_NAMESPACE, "title": "My Own Namespace", "supports_url_encoding": true}),
            );
            body["messages"] = json!([{"code": 10100, "message": "namespace is read-mostly"}]);
            then.status(200).json_body(body);
        })
        .await;
    let reply = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap();
    assert_eq!(reply.title, "My Own Namespace");
    assert_eq!(reply.supports_url_encoding, Some(true));
    assert_eq!(reply.messages()[0].code, 10100);
}

#[tokio::test]
async fn success_false_on_a_200_is_an_api_error_with_its_codes() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "DELETE", &cf_path("/values/k"));
            then.status(200)
                .json_body(cf_failure(10001, "service unavailable"));
        })
        .await;
    let error = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .delete("k")
        .await
        .unwrap_err();
    let Error::Api(api) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(api.status, 200);
    assert_eq!(error.codes(), [10001]);
    assert!(
        error.to_string().contains("service unavailable (10001)"),
        "{error}"
    );
}

#[tokio::test]
async fn a_4xx_with_several_codes_keeps_every_code_and_message() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(403).json_body(cf_failures(&[
                (10000, "Authentication error"),
                (10037, "token lacks the permission"),
            ]));
        })
        .await;
    let error = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(403));
    assert_eq!(error.codes(), [10000, 10037]);
    assert!(!error.is_not_found() && !error.is_rate_limited());
    assert!(std::error::Error::source(&error).is_none());
}

#[tokio::test]
async fn a_5xx_json_envelope_is_an_api_error_with_its_codes() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(500).json_body(cf_failures(&[
                (10001, "Internal error"),
                (10043, "storage backend unavailable"),
            ]));
        })
        .await;
    let error = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.codes()),
        (Some(500), vec![10001, 10043])
    );
}

#[tokio::test]
async fn an_html_502_from_a_proxy_is_an_api_error_with_a_body_excerpt() {
    let server = MockServer::start_async().await;
    let page = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>";
    server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/values/k"));
            then.status(502)
                .header("content-type", "text/html")
                .body(page);
        })
        .await;
    let error = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .put("k", "v", PutOptions::new())
        .await
        .unwrap_err();
    let Error::Api(api) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(api.status, 502);
    assert!(api.errors.is_empty());
    assert_eq!(api.excerpt.as_deref(), Some(page));
    assert!(error.to_string().contains("502 Bad Gateway"), "{error}");
}

#[tokio::test]
async fn an_html_4xx_keeps_its_status_though_the_body_is_not_json() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(403)
                .header("content-type", "text/html")
                .body("<html>Access denied</html>");
        })
        .await;
    let error = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    let Error::Api(api) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(api.status, 403);
    assert_eq!(api.excerpt.as_deref(), Some("<html>Access denied</html>"));
}

#[tokio::test]
async fn a_200_whose_json_is_malformed_is_a_bad_response() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(200)
                .header("content-type", "application/json")
                .body(r#"{"success": true, "result": "#);
        })
        .await;
    let error = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    let Error::BadResponse(bad) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(bad.status.map(|s| s.as_u16()), Some(200));
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn a_rate_limited_answer_says_so() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(429).json_body(cf_failure(
                971,
                "Please wait and consider throttling your request speed",
            ));
        })
        .await;
    let error = cloudflare_client(&server)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert!(error.is_rate_limited());
}

#[tokio::test]
async fn a_missing_namespace_stays_an_error_when_reading_a_value() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/k"));
            then.status(404).json_body(cf_namespace_not_found());
        })
        .await;
    let error = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .get("k")
        .await
        .unwrap_err();
    assert!(error.is_not_found());
    assert_eq!(error.codes(), [10013]);
}

#[tokio::test]
async fn nothing_answering_is_a_transport_error() {
    let credential = "t";
    // The discard port: nothing listens.
    let client = cloudflare_at("http://127.0.0.1:9", credential, RequestPolicy::default());
    let error = client.get_namespace(CF_NAMESPACE).await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert!(std::error::Error::source(&error).is_some());
}
