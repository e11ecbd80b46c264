//! What a caller gets when the network or the service misbehaves, and how many attempts the
//! server saw each time. A behaviour both providers share is written once and run on each
//! (`support/provider.rs` gives each one's client and answers); what only one provider has
//! follows, per provider.

use std::time::{Duration, Instant};

use edgekv::policy::RetryPolicy;
use edgekv::{Body, Error};

use crate::support::fast_policy;
use crate::support::faulty::{FaultyServer, Reply};
use crate::support::provider::Provider;

/// Runs a behaviour on each provider, as two tests.
macro_rules! on_both_providers {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            use crate::support::provider::Provider;

            #[tokio::test]
            async fn fastly() {
                super::$behaviour(Provider::Fastly).await;
            }

            #[tokio::test]
            async fn cloudflare() {
                super::$behaviour(Provider::Cloudflare).await;
            }
        }
    )*};
}

on_both_providers!(
    a_429_with_retry_after_1_is_waited_out_and_retried,
    a_429_asking_for_300_s_fails_at_once_and_reports_the_wait,
    two_503s_then_a_200_succeed_on_the_third_attempt,
    a_500_forever_gives_up_after_the_configured_attempts,
    retries_can_be_turned_off,
    a_connection_reset_before_the_response_is_retried_for_a_read,
    a_create_whose_answer_is_lost_is_not_retried_by_default,
    a_plain_put_whose_answer_is_lost_is_retried,
    a_put_of_bytes_answered_503_is_replayed,
    a_streamed_put_answered_503_is_not_replayed,
    a_value_cut_off_mid_body_is_an_error_never_a_short_value,
    a_stalled_body_trips_the_idle_read_timeout,
    no_response_headers_in_time_is_a_timeout_retried_for_a_read,
    with_equal_timeouts_a_wait_for_headers_still_ends_as_a_timeout,
    a_client_of_your_own_still_gets_the_header_timeout,
    malformed_json_is_a_bad_response_not_retried,
    a_redirect_to_another_host_is_not_followed_and_no_credential_leaves,
    rate_limit_headers_are_exposed_on_success_and_on_errors,
    a_client_side_limit_spaces_requests,
    requests_carry_the_crate_user_agent,
);

async fn a_429_with_retry_after_1_is_waited_out_and_retried(provider: Provider) {
    let server = FaultyServer::start(vec![
        provider.failure(429).header("retry-after", "1"),
        provider.value("apple0"),
    ])
    .await;
    let started = Instant::now();
    let value = provider
        .client(&server.url(), fast_policy())
        .get("apple")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.bytes().await.unwrap(), "apple0");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "did not honour Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(server.attempts(), 2);
}

async fn a_429_asking_for_300_s_fails_at_once_and_reports_the_wait(provider: Provider) {
    let server = FaultyServer::start(vec![
        provider.failure(429).header("retry-after", "300"),
        provider.details(),
    ])
    .await;
    let started = Instant::now();
    let error = provider
        .client(&server.url(), fast_policy())
        .details()
        .await
        .unwrap_err();
    assert!(error.is_rate_limited(), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
    assert!(error.to_string().contains("wait 300 s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.attempts(), 1);
}

async fn two_503s_then_a_200_succeed_on_the_third_attempt(provider: Provider) {
    let server = FaultyServer::start(vec![
        provider.failure(503),
        provider.failure(503),
        provider.details(),
    ])
    .await;
    provider
        .client(&server.url(), fast_policy())
        .details()
        .await
        .unwrap();
    assert_eq!(server.attempts(), 3);
}

async fn a_500_forever_gives_up_after_the_configured_attempts(provider: Provider) {
    let server = FaultyServer::start(vec![provider.failure(500)]).await;
    let mut policy = fast_policy();
    policy.retry.max_attempts = 4;
    let error = provider
        .client(&server.url(), policy)
        .details()
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(500), 4)
    );
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(server.attempts(), 4);
}

async fn retries_can_be_turned_off(provider: Provider) {
    let server = FaultyServer::start(vec![provider.failure(503), provider.details()]).await;
    let mut policy = fast_policy();
    policy.retry = RetryPolicy::disabled();
    let error = provider
        .client(&server.url(), policy)
        .details()
        .await
        .unwrap_err();
    assert_eq!(
        (error.status().map(|s| s.as_u16()), error.attempts()),
        (Some(503), 1)
    );
    assert_eq!(server.attempts(), 1);
}

async fn a_connection_reset_before_the_response_is_retried_for_a_read(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::Reset, provider.details()]).await;
    provider
        .client(&server.url(), fast_policy())
        .details()
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);
}

async fn a_create_whose_answer_is_lost_is_not_retried_by_default(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::Reset, provider.created()]).await;
    let error = provider
        .client(&server.url(), fast_policy())
        .create()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);

    let again = FaultyServer::start(vec![Reply::Reset, provider.created()]).await;
    let mut policy = fast_policy();
    policy.retry.retry_non_idempotent = true;
    provider
        .client(&again.url(), policy)
        .create()
        .await
        .unwrap();
    assert_eq!(again.attempts(), 2, "the caller opted in");
}

async fn a_plain_put_whose_answer_is_lost_is_retried(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::Reset, provider.written()]).await;
    provider
        .client(&server.url(), fast_policy())
        .put("apple", "v")
        .await
        .unwrap();
    assert_eq!(server.attempts(), 2);
    assert!(server.seen().iter().all(|r| r.body == b"v"));
}

async fn a_put_of_bytes_answered_503_is_replayed(provider: Provider) {
    let server = FaultyServer::start(vec![provider.failure(503), provider.written()]).await;
    provider
        .client(&server.url(), fast_policy())
        .put("k", "bytes")
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body == b"bytes"));
}

async fn a_streamed_put_answered_503_is_not_replayed(provider: Provider) {
    let from_reader = || Body::from_reader(std::io::Cursor::new(b"streamed value".to_vec()), None);
    let from_stream = || {
        let chunks = ["streamed ", "value"].map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from(s)));
        Body::from_stream(futures_util::stream::iter(chunks), None)
    };
    for (source, body) in [("a reader", from_reader()), ("a stream", from_stream())] {
        let server = FaultyServer::start(vec![provider.failure(503), provider.written()]).await;
        let error = provider
            .client(&server.url(), fast_policy())
            .put("k", body)
            .await
            .unwrap_err();
        assert_eq!(
            (error.status().map(|s| s.as_u16()), error.attempts()),
            (Some(503), 1),
            "from {source}"
        );
        assert!(
            error.to_string().contains("could not be replayed"),
            "from {source}: {error}"
        );
        assert_eq!(server.attempts(), 1, "from {source}");
    }
}

async fn a_value_cut_off_mid_body_is_an_error_never_a_short_value(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::CutBody {
        declared: 2048,
        sent: vec![b'x'; 512],
    }])
    .await;
    let value = provider
        .client(&server.url(), fast_policy())
        .get("k")
        .await
        .unwrap()
        .unwrap();
    let error = value.bytes().await.unwrap_err();
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);
}

async fn a_stalled_body_trips_the_idle_read_timeout(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::StallBody {
        declared: 2048,
        sent: vec![b'x'; 16],
    }])
    .await;
    let mut policy = fast_policy();
    policy.timeouts.idle_read = Duration::from_millis(300);
    let value = provider
        .client(&server.url(), policy)
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

async fn no_response_headers_in_time_is_a_timeout_retried_for_a_read(provider: Provider) {
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    let error = provider
        .client(&server.url(), policy)
        .details()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Transport(_)) && error.is_timeout(),
        "{error}"
    );
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
}

async fn with_equal_timeouts_a_wait_for_headers_still_ends_as_a_timeout(provider: Provider) {
    // Both the attempt timer and the client's read timer run; whichever ends first, it is a
    // timeout, retried for a read.
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    policy.timeouts.idle_read = Duration::from_millis(200);
    let started = Instant::now();
    let error = provider
        .client(&server.url(), policy)
        .details()
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

async fn a_client_of_your_own_still_gets_the_header_timeout(provider: Provider) {
    // A reqwest client without a read timeout: the transport's own timer ends the wait.
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let mut policy = fast_policy();
    policy.timeouts.attempt = Duration::from_millis(200);
    let error = provider
        .client_over(&server.url(), policy, reqwest::Client::new())
        .details()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!((error.attempts(), server.attempts()), (3, 3));
}

async fn malformed_json_is_a_bad_response_not_retried(provider: Provider) {
    let cut = match provider {
        Provider::Fastly => r#"{"id": "x", "#,
        Provider::Cloudflare => r#"{"success": tr"#,
    };
    let server = FaultyServer::start(vec![Reply::body(200, "application/json", cut)]).await;
    let error = provider
        .client(&server.url(), fast_policy())
        .details()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BadResponse(_)), "{error:?}");
    assert_eq!(server.attempts(), 1);
}

async fn a_redirect_to_another_host_is_not_followed_and_no_credential_leaves(provider: Provider) {
    let (credential, value) = provider.credential_header();
    for status in [302, 307] {
        let other = FaultyServer::start_as("localhost", vec![provider.details()]).await;
        let location = format!("{}{}", other.url(), provider.details_path());
        let server =
            FaultyServer::start(vec![Reply::status(status).header("location", location)]).await;
        let error = provider
            .client(&server.url(), fast_policy())
            .details()
            .await
            .unwrap_err();
        assert_eq!(
            error.status().map(|s| s.as_u16()),
            Some(status),
            "{error:?}"
        );
        assert_eq!(server.attempts(), 1);
        assert_eq!(server.seen()[0].header(credential), Some(value.as_str()));
        assert_eq!(other.attempts(), 0, "followed a {status}");
    }
}

async fn rate_limit_headers_are_exposed_on_success_and_on_errors(provider: Provider) {
    let server = FaultyServer::start(vec![
        provider.rate_limited(provider.details(), 1199, 300),
        provider.rate_limited(provider.failure(403), 1198, 299),
    ])
    .await;
    let client = provider.client(&server.url(), fast_policy());
    client.details().await.unwrap();
    assert_eq!(client.rate_limit().unwrap().remaining, Some(1199));
    let error = client.details().await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(403));
    assert_eq!(error.rate_limit().unwrap().remaining, Some(1198));
    let reset = client.rate_limit().unwrap().reset.unwrap();
    // Fastly tells the moment of the reset, so a second may pass before it is read.
    assert!(
        (Duration::from_secs(290)..=Duration::from_secs(299)).contains(&reset),
        "{reset:?}"
    );
}

async fn a_client_side_limit_spaces_requests(provider: Provider) {
    let server = FaultyServer::start(vec![provider.written()]).await;
    let mut policy = fast_policy();
    policy.client_limit = Some(edgekv::policy::ClientLimit::new(
        2,
        Duration::from_millis(500),
    ));
    let client = provider.client(&server.url(), policy);
    let started = Instant::now();
    for _ in 0..3 {
        client.put("k", "v").await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.attempts(), 3);
}

async fn requests_carry_the_crate_user_agent(provider: Provider) {
    let server = FaultyServer::start(vec![provider.details()]).await;
    provider
        .client(&server.url(), fast_policy())
        .details()
        .await
        .unwrap();
    let agent = server.seen()[0].header("user-agent").unwrap().to_string();
    assert_eq!(agent, format!("edgekv/{}", env!("CARGO_PKG_VERSION")));
}

mod fastly {
    //! Behaviours only Fastly has: conditional and appending writes, deletes that find the item
    //! gone, and ndjson batches.

    use edgekv::Error;
    use edgekv::fastly::{BulkEntry, BulkOptions, DeleteOptions, PutOptions, WriteMode};
    use serde_json::json;

    use crate::support::faulty::{FaultyServer, Reply};
    use crate::support::{FASTLY_STORE, FASTLY_TOKEN, fast_policy, fastly_at};

    fn store(server: &FaultyServer) -> edgekv::fastly::Store {
        fastly_at(&server.url(), FASTLY_TOKEN, fast_policy()).store(FASTLY_STORE)
    }

    #[tokio::test]
    async fn a_conditional_put_whose_answer_is_lost_is_not_retried_by_default() {
        let server = FaultyServer::start(vec![Reply::Reset, Reply::status(200)]).await;
        let options = PutOptions::new().if_generation_match(1_750_707_676_353_461);
        let error = store(&server).put("apple", "v", options).await.unwrap_err();
        assert!(matches!(error, Error::Transport(_)), "{error:?}");
        assert_eq!(server.attempts(), 1);

        // An append sent twice would append twice: not retried either.
        let again = FaultyServer::start(vec![Reply::Reset, Reply::status(200)]).await;
        let append = PutOptions::new().mode(WriteMode::Append);
        store(&again).put("apple", "v", append).await.unwrap_err();
        assert_eq!(again.attempts(), 1);
    }

    #[tokio::test]
    async fn a_retried_delete_that_finds_the_item_gone_counts_as_done() {
        let strict = || DeleteOptions::new().force(false);
        let server = FaultyServer::start(vec![Reply::Reset, Reply::status(404)]).await;
        store(&server).delete("apple", strict()).await.unwrap();
        assert_eq!(server.attempts(), 2);

        // On the first attempt a 404 is the answer itself.
        let missing = FaultyServer::start(vec![Reply::status(404)]).await;
        let error = store(&missing).delete("apple", strict()).await.unwrap_err();
        assert!(error.is_not_found());
        assert_eq!(missing.attempts(), 1);

        // With `force` (the default) a missing item is no 404: after a retry the 404 is the
        // store's, and stays an error.
        let store_gone = FaultyServer::start(vec![Reply::Reset, Reply::status(404)]).await;
        let error = store(&store_gone)
            .delete("apple", DeleteOptions::new())
            .await
            .unwrap_err();
        assert!(error.is_not_found(), "{error:?}");
        assert_eq!(store_gone.attempts(), 2);
        assert!(store_gone.seen()[1].target.ends_with("?force=true"));
    }

    #[tokio::test]
    async fn a_200_batch_answer_that_reports_failed_lines_is_not_retried() {
        let server = FaultyServer::start(vec![Reply::json(
            200,
            json!({"title": "partial", "errors": [{"key": "b", "index": 1, "code": "400", "reason": "bad"}]}),
        )])
        .await;
        let entries = ["a", "b"].map(|k| BulkEntry::new(k, "v"));
        let report = store(&server)
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
        let report = store(&server)
            .bulk_write(entries, &BulkOptions::default())
            .await
            .unwrap();
        assert_eq!(report.written, 3);
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, seen[1].body);
    }
}

mod cloudflare {
    //! Behaviours only Cloudflare has: an envelope that says it failed under a 200.

    use crate::support::envelope::cf_failure;
    use crate::support::faulty::{FaultyServer, Reply};
    use crate::support::{CF_NAMESPACE, CLOUDFLARE_TOKEN, cloudflare_at, fast_policy};

    #[tokio::test]
    async fn success_false_with_status_200_is_an_api_error_not_retried() {
        let server = FaultyServer::start(vec![Reply::json(200, cf_failure(10001, "failed"))]).await;
        let credential = CLOUDFLARE_TOKEN;
        let error = cloudflare_at(&server.url(), credential, fast_policy())
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
}
