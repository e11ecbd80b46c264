//! What a Cloudflare caller gets when the network or the service misbehaves, and how many
//! attempts the server saw each time.
#![cfg(feature = "emulator")]

mod support;

use std::time::{Duration, Instant};

use edgekv::cloudflare::{Client, PutOptions};
use edgekv::policy::{RequestPolicy, RetryPolicy};
use edgekv::{Body, Error};
use serde_json::json;
use support::faulty::{FaultyServer, Reply};
use support::{CF_ACCOUNT, CF_NAMESPACE, CLOUDFLARE_TOKEN, fast_policy};

fn client(server: &FaultyServer, policy: RequestPolicy) -> Client {
    let credential = edgekv::Credential::CloudflareToken(CLOUDFLARE_TOKEN.into());
    Client::builder(credential, CF_ACCOUNT)
        .base_url(server.url())
        .policy(policy)
        .build()
        .unwrap()
}

fn ok_namespace() -> Reply {
    Reply::json(
        200,
        json!({"success": true, "errors": [], "messages": [], "result": {"id": CF_NAMESPACE, "title": "t"}}),
    )
}

fn ok_empty() -> Reply {
    Reply::json(
        200,
        json!({"success": true, "errors": [], "messages": [], "result": null}),
    )
}

fn failure(status: u16, code: i64) -> Reply {
    Reply::json(
        status,
        json!({"success": false, "errors": [{"code": code, "message": "failed"}], "messages": [], "result": null}),
    )
}

#[tokio::test]
async fn a_429_with_retry_after_1_is_waited_out_and_retried() {
    let server = FaultyServer::start(vec![
        failure(429, 971).header("retry-after", "1"),
        ok_namespace(),
    ])
    .await;
    let started = Instant::now();
    let namespace = client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap();
    assert_eq!(namespace.id, CF_NAMESPACE);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "did not honour Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(server.attempts(), 2);
}

#[tokio::test]
async fn a_429_asking_for_300_s_fails_at_once_and_reports_the_wait() {
    let server = FaultyServer::start(vec![
        failure(429, 971).header("retry-after", "300"),
        ok_namespace(),
    ])
    .await;
    let started = Instant::now();
    let error = client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert!(error.is_rate_limited());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
    assert!(error.to_string().contains("wait 300 s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn two_503s_then_a_200_succeed_on_the_third_attempt() {
    let server = FaultyServer::start(vec![
        failure(503, 10001),
        failure(503, 10001),
        ok_namespace(),
    ])
    .await;
    client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap();
    assert_eq!(server.attempts(), 3);
}

#[tokio::test]
async fn a_500_forever_gives_up_after_the_configured_attempts() {
    let server = FaultyServer::start(vec![failure(500, 10001)]).await;
    let mut policy = fast_policy();
    policy.retry.max_attempts = 4;
    let error = client(&server, policy)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(500), 4)
    );
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(server.attempts(), 4);
}

#[tokio::test]
async fn retries_can_be_turned_off() {
    let server = FaultyServer::start(vec![failure(503, 10001), ok_namespace()]).await;
    let mut policy = fast_policy();
    policy.retry = RetryPolicy::disabled();
    let error = client(&server, policy)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(503), 1)
    );
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_connection_reset_before_the_response_is_retried_for_a_read() {
    let server = FaultyServer::start(vec![Reply::Reset, ok_namespace()]).await;
    client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_retried_by_default() {
    let server = FaultyServer::start(vec![Reply::Reset, ok_namespace()]).await;
    let error = client(&server, fast_policy())
        .create_namespace("title")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);

    let again = FaultyServer::start(vec![Reply::Reset, ok_namespace()]).await;
    let mut policy = fast_policy();
    policy.retry.retry_non_idempotent = true;
    client(&again, policy)
        .create_namespace("title")
        .await
        .unwrap();
    assert_eq!(again.attempts(), 2, "the caller opted in");
}

#[tokio::test]
async fn a_value_cut_off_mid_body_is_an_error_never_a_short_value() {
    let server = FaultyServer::start(vec![Reply::CutBody {
        declared: 1000,
        sent: vec![b'x'; 100],
    }])
    .await;
    let value = client(&server, fast_policy())
        .namespace(CF_NAMESPACE)
        .get("k")
        .await
        .unwrap()
        .unwrap();
    let error = value.bytes().await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_stalled_body_trips_the_idle_read_timeout() {
    let server = FaultyServer::start(vec![Reply::StallBody {
        declared: 1000,
        sent: vec![b'x'; 10],
    }])
    .await;
    let mut policy = fast_policy();
    policy.timeouts.idle_read = Duration::from_millis(300);
    let value = client(&server, policy)
        .namespace(CF_NAMESPACE)
        .get("k")
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let error = value.bytes().await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn no_response_headers_in_time_is_a_timeout_retried_for_a_read() {
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    let error = client(&server, policy)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Transport(_)) && error.is_timeout(),
        "{error}"
    );
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
}

#[tokio::test]
async fn malformed_json_is_a_bad_response_not_retried() {
    let server = FaultyServer::start(vec![Reply::body(
        200,
        "application/json",
        r#"{"success": tr"#,
    )])
    .await;
    let error = client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadResponse(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn success_false_with_status_200_is_an_api_error_not_retried() {
    let server = FaultyServer::start(vec![failure(200, 10001)]).await;
    let error = client(&server, fast_policy())
        .namespace(CF_NAMESPACE)
        .delete("k")
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.codes()),
        (Some(200), vec![10001])
    );
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_and_no_credential_leaves() {
    let other = FaultyServer::start_as("localhost", vec![ok_namespace()]).await;
    let location = format!(
        "{}/accounts/{CF_ACCOUNT}/storage/kv/namespaces/{CF_NAMESPACE}",
        other.url()
    );
    let server = FaultyServer::start(vec![Reply::status(302).header("location", location)]).await;
    let error = client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(302), "{error:?}");
    assert_eq!(server.attempts(), 1);
    assert!(
        other
            .seen()
            .iter()
            .all(|r| r.header("authorization").is_none() && r.header("x-auth-key").is_none())
    );
    assert_eq!(other.attempts(), 0);
}

#[tokio::test]
async fn a_streamed_put_answered_503_is_not_replayed() {
    let server = FaultyServer::start(vec![failure(503, 10001), ok_empty()]).await;
    let chunks = futures_util::stream::iter(
        ["streamed ", "value"].map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from(s))),
    );
    let error = client(&server, fast_policy())
        .namespace(CF_NAMESPACE)
        .put("k", Body::from_stream(chunks, None), PutOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(503), 1)
    );
    assert!(
        error.to_string().contains("could not be replayed"),
        "{error}"
    );
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_put_of_bytes_answered_503_is_replayed() {
    let server = FaultyServer::start(vec![failure(503, 10001), ok_empty()]).await;
    client(&server, fast_policy())
        .namespace(CF_NAMESPACE)
        .put("k", "bytes", PutOptions::new())
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body == b"bytes"));
}

#[tokio::test]
async fn rate_limit_headers_are_exposed_on_success_and_on_errors() {
    let server = FaultyServer::start(vec![
        ok_namespace()
            .header("ratelimit", "\"default\";r=1199;t=300")
            .header("ratelimit-policy", "\"default\";q=1200;w=300"),
        failure(403, 10000).header("ratelimit", "\"default\";r=1198;t=299"),
    ])
    .await;
    let client = client(&server, fast_policy());
    client.get_namespace(CF_NAMESPACE).await.unwrap();
    assert_eq!(client.rate_limit().unwrap().remaining, Some(1199));
    let error = client.get_namespace(CF_NAMESPACE).await.unwrap_err();
    assert_eq!(error.rate_limit().unwrap().remaining, Some(1198));
    assert_eq!(
        client.rate_limit().unwrap().reset,
        Some(Duration::from_secs(299))
    );
}

#[tokio::test]
async fn requests_carry_the_crate_user_agent() {
    let server = FaultyServer::start(vec![ok_namespace()]).await;
    client(&server, fast_policy())
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap();
    let agent = server.seen()[0].header("user-agent").unwrap().to_string();
    assert_eq!(agent, format!("edgekv/{}", env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn with_equal_timeouts_a_wait_for_headers_still_ends_as_a_timeout() {
    // Both the attempt timer and the client's read timer run; whichever ends first, it is a
    // timeout, retried for a read.
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    policy.timeouts.idle_read = Duration::from_millis(200);
    let started = Instant::now();
    let error = client(&server, policy)
        .get_namespace(CF_NAMESPACE)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Transport(_))
            && error.to_string().contains("timed out")
            && error.is_timeout(),
        "{error}"
    );
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_client_of_your_own_still_gets_the_header_timeout() {
    // A reqwest client without a read timeout: the transport's own timer ends the wait.
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    let error = Client::builder(
        edgekv::Credential::CloudflareToken(CLOUDFLARE_TOKEN.into()),
        CF_ACCOUNT,
    )
    .base_url(server.url())
    .policy(policy)
    .http_client(reqwest::Client::new())
    .build()
    .unwrap()
    .get_namespace(CF_NAMESPACE)
    .await
    .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
}
