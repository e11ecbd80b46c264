//! What an error tells a service that reports or triages it: the provider, the request id its
//! support asks for, whether it is an authentication or permission failure, whether trying
//! again may help; and a `Display` that states the stage once, leaving the cause to `source()`.
//! Fastly's request id is checked against go-fastly's recorded answers in `fastly_replay.rs`.

use edgekv::{Error, Provider};
use httpmock::MockServer;

use crate::support::envelope::cf_failure;
use crate::support::{CF_NAMESPACE, cf_path, cloudflare_client, exact};
#[cfg(feature = "emulator")]
use crate::support::{fast_policy, fastly_at};

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

/// A succeeding Cloudflare call gives its answer's Ray ID, and a failing one its error's: each
/// the `CF-Ray` the emulator answered that request with (its request log says which).
#[cfg(feature = "emulator")]
#[tokio::test]
async fn cloudflare_calls_give_the_ray_id_of_their_answer_succeeding_or_failing() {
    use edgekv::WithAnswer as _;
    use edgekv::emulator::Emulator;
    use reqwest::StatusCode;

    let emu = Emulator::new().await.unwrap();
    let namespace = emu.cloudflare_namespace().await.unwrap();
    emu.clear_requests();

    let (_reply, answer) = namespace
        .put("k", "v", Default::default())
        .with_answer()
        .await
        .unwrap();
    let answer = answer.expect("a request was sent");
    let logged = emu.requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(answer.request_id(), logged[0].ray_id);
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.provider(), Provider::Cloudflare);
    assert_eq!(
        answer.headers()["cf-ray"].to_str().unwrap(),
        logged[0].ray_id.as_deref().unwrap()
    );

    // A missing key is a success (`None`) whose answer is the 404.
    let (value, answer) = namespace.get("absent").with_answer().await.unwrap();
    assert!(value.is_none());
    let answer = answer.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.request_id(), emu.requests().last().unwrap().ray_id);
    assert_ne!(answer.request_id(), logged[0].ray_id, "one id per answer");

    // A failing call: the error carries the Ray ID (and `with_answer` changes nothing of it).
    let wrong = edgekv::cloudflare::Client::builder("not-the-token", emu.cloudflare().account_id())
        .base_url(emu.cloudflare_url())
        .build()
        .unwrap();
    let error = wrong
        .namespace(namespace.id())
        .get("k")
        .with_answer()
        .await
        .unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    let ray = emu.requests().last().unwrap().ray_id.clone();
    assert!(ray.is_some());
    assert_eq!(error.request_id(), ray.as_deref());
}

/// A Fastly get of a missing item on a fresh handle makes two requests (the item, then whether
/// the store exists); its answer is the item's 404, not the store lookup made on the side. The
/// emulator's Fastly answers carry no request id, as the service's carry none (the recorded
/// answers' `X-Served-By` and `X-Timer` are checked in `fastly_replay.rs`).
#[cfg(feature = "emulator")]
#[tokio::test]
async fn a_fastly_answer_is_the_calls_own_not_a_lookup_made_on_the_side() {
    use edgekv::WithAnswer as _;
    use edgekv::emulator::Emulator;
    use reqwest::StatusCode;

    let emu = Emulator::new().await.unwrap();
    let store_id = emu.fastly_store().await.unwrap().id().to_string();
    let fresh = emu.fastly_builder().build().unwrap().store(&store_id);
    emu.clear_requests();
    let (item, answer) = fresh.get("absent").with_answer().await.unwrap();
    assert!(item.is_none());
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 200], "the item, then the store");
    let answer = answer.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.provider(), Provider::Fastly);
    assert_eq!(answer.request_id(), None);

    // A bulk call given nothing sends nothing, and says so.
    let (report, answer) = fresh
        .bulk_write(Vec::new(), &Default::default())
        .with_answer()
        .await
        .unwrap();
    assert_eq!(report.submitted(), 0);
    assert!(answer.is_none());
}

/// The future of `with_answer` is `Send` when the call's is: it can be spawned.
#[cfg(feature = "emulator")]
#[tokio::test]
async fn a_call_with_its_answer_can_be_spawned() {
    use edgekv::WithAnswer as _;
    let emu = edgekv::emulator::Emulator::new().await.unwrap();
    let store = emu.fastly_store().await.unwrap();
    let spawned =
        tokio::spawn(async move { store.put("k", "v", Default::default()).with_answer().await });
    let ((), answer) = spawned.await.unwrap().unwrap();
    assert_eq!(answer.unwrap().status().as_u16(), 200);
}

/// A retried call's answer is its last attempt's; a listing's read-ahead, which runs on a task
/// of its own, still reports to the call that asked (here `clear` of an empty store: its only
/// request is the listing).
#[cfg(feature = "emulator")]
#[tokio::test]
async fn the_answer_is_the_last_attempts_and_follows_a_listings_read_ahead() {
    use edgekv::WithAnswer as _;
    use edgekv::emulator::faults::Reply;

    use crate::support::faulty::FaultyServer;
    use crate::support::{FASTLY_STORE, FASTLY_TOKEN};

    let server = FaultyServer::start(vec![
        Reply::status(503)
            .header("x-served-by", "cache-a")
            .header("x-timer", "S1"),
        Reply::status(200)
            .header("x-served-by", "cache-b")
            .header("x-timer", "S2"),
    ])
    .await;
    let store = fastly_at(&server.url(), FASTLY_TOKEN, fast_policy()).store(FASTLY_STORE);
    let ((), answer) = store
        .put("k", "v", Default::default())
        .with_answer()
        .await
        .unwrap();
    let answer = answer.unwrap();
    assert_eq!(server.attempts(), 2);
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.request_id().as_deref(), Some("cache-b S2"));

    let emu = edgekv::emulator::Emulator::new().await.unwrap();
    let empty = emu.fastly_store().await.unwrap();
    let (report, answer) = empty
        .clear(&Default::default())
        .with_answer()
        .await
        .unwrap();
    assert_eq!(report.submitted(), 0);
    assert_eq!(answer.expect("the listing's answer").status().as_u16(), 200);
}
