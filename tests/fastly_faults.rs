//! What a Fastly caller gets when the network or the service misbehaves, and how many attempts
//! the server saw each time.
#![cfg(feature = "emulator")]

mod support;

use std::time::{Duration, Instant};

use edgekv::fastly::{BulkEntry, BulkOptions, Client, DeleteOptions, PutOptions, WriteMode};
use edgekv::policy::RequestPolicy;
use edgekv::{Body, Error};
use serde_json::json;
use support::faulty::{FaultyServer, Reply};
use support::{FASTLY_STORE, FASTLY_TOKEN, fast_policy};

fn client(server: &FaultyServer, policy: RequestPolicy) -> Client {
    Client::builder(FASTLY_TOKEN)
        .base_url(server.url())
        .policy(policy)
        .build()
        .unwrap()
}

fn item(value: &str) -> Reply {
    Reply::body(200, "application/octet-stream", value)
        .header("generation", "1750707676353461")
        .header("metadata", "")
}

fn store_details() -> Reply {
    Reply::json(
        200,
        json!({"id": FASTLY_STORE, "name": "kv-store-test-store"}),
    )
}

#[tokio::test]
async fn a_429_with_retry_after_1_is_waited_out_and_retried() {
    let server = FaultyServer::start(vec![
        Reply::status(429).header("retry-after", "1"),
        item("apple0"),
    ])
    .await;
    let started = Instant::now();
    let value = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .get("apple")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.bytes().await.unwrap(), "apple0");
    assert!(started.elapsed() >= Duration::from_millis(950));
    assert_eq!(server.attempts(), 2);
}

#[tokio::test]
async fn a_429_asking_for_300_s_fails_at_once_and_reports_the_wait() {
    let server = FaultyServer::start(vec![Reply::status(429).header("retry-after", "300")]).await;
    let error = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .get("apple")
        .await
        .unwrap_err();
    assert!(error.is_rate_limited());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn two_503s_then_a_200_succeed_on_the_third_attempt() {
    let server = FaultyServer::start(vec![Reply::status(503), Reply::status(503), item("v")]).await;
    client(&server, fast_policy())
        .store(FASTLY_STORE)
        .get("k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.attempts(), 3);
}

#[tokio::test]
async fn a_500_forever_gives_up_after_the_configured_attempts() {
    let server = FaultyServer::start(vec![Reply::status(500)]).await;
    let mut policy = fast_policy();
    policy.retry.max_attempts = 2;
    let error = client(&server, policy)
        .get_store(FASTLY_STORE)
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(500), 2)
    );
    assert_eq!(server.attempts(), 2);
}

#[tokio::test]
async fn a_connection_reset_before_the_response_is_retried_for_a_read() {
    let server = FaultyServer::start(vec![Reply::Reset, store_details()]).await;
    client(&server, fast_policy())
        .get_store(FASTLY_STORE)
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);
}

#[tokio::test]
async fn a_conditional_put_whose_answer_is_lost_is_not_retried_by_default() {
    let server = FaultyServer::start(vec![Reply::Reset, Reply::status(200)]).await;
    let options = PutOptions::new().if_generation_match(1_750_707_676_353_461);
    let error = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .put("apple", "v", options)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);

    // An append sent twice would append twice: not retried either.
    let again = FaultyServer::start(vec![Reply::Reset, Reply::status(200)]).await;
    let append = PutOptions::new().mode(WriteMode::Append);
    client(&again, fast_policy())
        .store(FASTLY_STORE)
        .put("apple", "v", append)
        .await
        .unwrap_err();
    assert_eq!(again.attempts(), 1);
}

#[tokio::test]
async fn a_plain_put_whose_answer_is_lost_is_retried() {
    let server = FaultyServer::start(vec![Reply::Reset, Reply::status(200)]).await;
    client(&server, fast_policy())
        .store(FASTLY_STORE)
        .put("apple", "v", PutOptions::new())
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);
    assert!(server.seen().iter().all(|r| r.body == b"v"));
}

#[tokio::test]
async fn a_retried_delete_that_finds_the_item_gone_counts_as_done() {
    let server = FaultyServer::start(vec![Reply::Reset, Reply::status(404)]).await;
    client(&server, fast_policy())
        .store(FASTLY_STORE)
        .delete("apple", DeleteOptions::new())
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);

    // On the first attempt a 404 is the answer itself.
    let missing = FaultyServer::start(vec![Reply::status(404)]).await;
    let error = client(&missing, fast_policy())
        .store(FASTLY_STORE)
        .delete("apple", DeleteOptions::new())
        .await
        .unwrap_err();
    assert!(error.is_not_found());
    assert_eq!(missing.attempts(), 1);
}

#[tokio::test]
async fn a_value_cut_off_mid_body_is_an_error_never_a_short_value() {
    let server = FaultyServer::start(vec![Reply::CutBody {
        declared: 2048,
        sent: vec![b'x'; 512],
    }])
    .await;
    let item = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .get("k")
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        item.bytes().await.unwrap_err(),
        Error::Transport(_)
    ));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_stalled_body_trips_the_idle_read_timeout() {
    let server = FaultyServer::start(vec![Reply::StallBody {
        declared: 2048,
        sent: vec![b'x'; 16],
    }])
    .await;
    let mut policy = fast_policy();
    policy.timeouts.idle_read = Duration::from_millis(300);
    let item = client(&server, policy)
        .store(FASTLY_STORE)
        .get("k")
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        item.bytes().await.unwrap_err(),
        Error::Transport(_)
    ));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn malformed_json_is_a_bad_response_not_retried() {
    let server = FaultyServer::start(vec![Reply::body(
        200,
        "application/json",
        r#"{"id": "x", "#,
    )])
    .await;
    let error = client(&server, fast_policy())
        .get_store(FASTLY_STORE)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadResponse(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_200_batch_answer_that_reports_failed_lines_is_not_retried() {
    let server = FaultyServer::start(vec![Reply::json(
        200,
        json!({"title": "partial", "errors": [{"key": "b", "index": 1, "code": "400", "reason": "bad"}]}),
    )])
    .await;
    let entries = ["a", "b"].map(|k| BulkEntry::new(k, "v"));
    let report = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.written, report.failed[0].key.as_str()), (1, "b"));
    assert_eq!(server.attempts(), 1);
}

#[tokio::test]
async fn a_batch_chunk_answered_503_is_sent_again_whole() {
    let server = FaultyServer::start(vec![
        Reply::status(503),
        Reply::json(200, json!({"type": "", "title": "success", "errors": []})),
    ])
    .await;
    let entries = (0..3).map(|i| BulkEntry::new(format!("k{i}"), "v"));
    let report = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .bulk_write(entries, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!(report.written, 3);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed_and_the_token_does_not_leave() {
    let other = FaultyServer::start_as("localhost", vec![store_details()]).await;
    let location = format!("{}/resources/stores/kv/{FASTLY_STORE}", other.url());
    let server = FaultyServer::start(vec![Reply::status(307).header("location", location)]).await;
    let error = client(&server, fast_policy())
        .get_store(FASTLY_STORE)
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(307), "{error:?}");
    assert_eq!(server.seen()[0].header("fastly-key"), Some(FASTLY_TOKEN));
    assert!(
        other
            .seen()
            .iter()
            .all(|r| r.header("fastly-key").is_none())
    );
    assert_eq!(other.attempts(), 0);
}

#[tokio::test]
async fn a_streamed_put_answered_503_is_not_replayed() {
    let server = FaultyServer::start(vec![Reply::status(503), Reply::status(200)]).await;
    let reader = std::io::Cursor::new(b"streamed value".to_vec());
    let error = client(&server, fast_policy())
        .store(FASTLY_STORE)
        .put("k", Body::from_reader(reader, None), PutOptions::new())
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
async fn fastly_rate_limit_headers_are_exposed() {
    let reset_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let server = FaultyServer::start(vec![
        Reply::status(200)
            .header("fastly-ratelimit-remaining", "998")
            .header("fastly-ratelimit-reset", reset_at.to_string()),
    ])
    .await;
    let client = client(&server, fast_policy());
    client
        .store(FASTLY_STORE)
        .put("k", "v", PutOptions::new())
        .await
        .unwrap();
    let rate = client.rate_limit().unwrap();
    assert_eq!(rate.remaining, Some(998));
    assert!(rate.reset.unwrap() > Duration::from_secs(590));
}

#[tokio::test]
async fn a_client_side_limit_spaces_requests() {
    let server = FaultyServer::start(vec![Reply::status(200)]).await;
    let mut policy = fast_policy();
    policy.client_limit = Some(edgekv::policy::ClientLimit {
        requests: 2,
        per: Duration::from_millis(500),
    });
    let store = client(&server, policy).store(FASTLY_STORE);
    let started = Instant::now();
    for _ in 0..3 {
        store.put("k", "v", PutOptions::new()).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.attempts(), 3);
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
        .get_store(FASTLY_STORE)
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
    let error = Client::builder(FASTLY_TOKEN)
        .base_url(server.url())
        .policy(policy)
        .http_client(reqwest::Client::new())
        .build()
        .unwrap()
        .get_store(FASTLY_STORE)
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
}
