//! What an error tells a service that reports or triages it: the provider, the request id its
//! support asks for, whether it is an authentication or permission failure, whether trying
//! again may help; and a `Display` that states the stage once, leaving the cause to `source()`.
//! Fastly's request id is checked against go-fastly's recorded answers in `fastly_replay.rs`.

use edgekv::{Error, Provider};
use httpmock::MockServer;

use crate::support::envelope::cf_failure;
use crate::support::{CF_NAMESPACE, cf_path, cloudflare_client, exact, fast_policy, fastly_at};

/// Cloudflare's failure answered with `status`, `code` and a Ray ID, to a value read.
async fn cloudflare_failure(status: u16, code: i64) -> Error {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path("/values/k"));
            then.status(status)
                .header("content-type", "application/json")
                .header("cf-ray", "8f3a2b1c4d5e6f70-EWR")
                .json_body(cf_failure(code, "as the service says"));
        })
        .await;
    cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .with_url_encoding(true)
        .get("k")
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_cloudflare_authentication_error_is_unauthorized_with_its_ray_id() {
    let error = cloudflare_failure(403, 10000).await;
    assert!(error.is_unauthorized(), "{error:?}");
    assert!(!error.is_forbidden(), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert_eq!(error.provider(), Some(Provider::Cloudflare));
    assert_eq!(error.request_id(), Some("8f3a2b1c4d5e6f70-EWR"));
}

#[tokio::test]
async fn a_token_without_the_permission_is_forbidden() {
    let error = cloudflare_failure(403, 10037).await;
    assert!(
        error.is_forbidden() && !error.is_unauthorized(),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_server_error_is_retryable() {
    let error = cloudflare_failure(503, 10001).await;
    assert!(error.is_retryable(), "{error:?}");
    assert_eq!(error.request_id(), Some("8f3a2b1c4d5e6f70-EWR"));
}

#[cfg(feature = "emulator")]
#[tokio::test]
async fn a_wrong_token_is_unauthorized_on_both_providers_of_the_emulator() {
    use edgekv::emulator::{DEFAULT_ACCOUNT, Emulator, EmulatorConfig};
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let fastly = fastly_at(&emulator.fastly_url(), "not-the-token", fast_policy());
    let error = fastly.get_store("s").await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert_eq!(error.provider(), Some(Provider::Fastly));
    let credential = "not-the-token";
    let cloudflare = edgekv::cloudflare::Client::builder(credential, DEFAULT_ACCOUNT)
        .base_url(emulator.cloudflare_url())
        .build()
        .unwrap();
    let error = cloudflare.get_namespace("n").await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert_eq!(error.provider(), Some(Provider::Cloudflare));
}

#[tokio::test]
async fn display_states_the_stage_once_and_source_gives_the_cause() {
    let server = MockServer::start_async().await;
    let error = cloudflare_client(&server)
        .namespace(CF_NAMESPACE)
        .with_url_encoding(true)
        .get(&"k".repeat(600))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "refused before sending");
    let cause = std::error::Error::source(&error)
        .expect("the cause")
        .to_string();
    assert!(cause.contains("over the limit of 512"), "{cause}");
    assert!(
        !error.to_string().contains(&cause),
        "the cause is not repeated"
    );
    assert_eq!(error.provider(), None, "nothing was sent");
    assert_eq!(error.request_id(), None);
    assert!(!error.is_retryable());
}
