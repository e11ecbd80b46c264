//! Handles make no hidden requests a service cannot avoid: what a handle must look up (whether
//! a Fastly store exists, whether a Cloudflare namespace stores keys literally) is asked once per
//! client, shared by every handle, and skipped entirely when stated up front.

use httpmock::MockServer;
use serde_json::json;

use crate::support::envelope::cf_ok;
use crate::support::{
    CF_NAMESPACE, FASTLY_STORE, FASTLY_TOKEN, cf_path, cloudflare_client, exact, fast_policy,
    fastly_at,
};

#[tokio::test]
async fn a_fastly_store_known_to_exist_answers_a_missing_item_with_one_request() {
    let server = MockServer::start_async().await;
    let item = server
        .mock_async(|when, then| {
            exact(
                when,
                "GET",
                &format!("/resources/stores/kv/{FASTLY_STORE}/keys/missing"),
            );
            then.status(404);
        })
        .await;
    let store_lookup = server
        .mock_async(|when, then| {
            exact(when, "GET", &format!("/resources/stores/kv/{FASTLY_STORE}"));
            then.status(200)
                .json_body(json!({"id": FASTLY_STORE, "name": "s"}));
        })
        .await;
    let client = fastly_at(&server.base_url(), FASTLY_TOKEN, fast_policy());
    let store = client.store(FASTLY_STORE).known_to_exist();
    assert!(store.get("missing").await.unwrap().is_none());
    assert_eq!(
        (item.calls_async().await, store_lookup.calls_async().await),
        (1, 0)
    );

    // Without it, the first missing item asks once per client, not once per handle.
    let client = fastly_at(&server.base_url(), FASTLY_TOKEN, fast_policy());
    for _ in 0..3 {
        let fresh_handle = client.store(FASTLY_STORE);
        assert!(fresh_handle.get("missing").await.unwrap().is_none());
    }
    assert_eq!(
        (item.calls_async().await, store_lookup.calls_async().await),
        (4, 1)
    );
}

#[tokio::test]
async fn a_cloudflare_namespace_looks_up_url_encoding_once_per_client_or_never() {
    let server = MockServer::start_async().await;
    let lookup = server
        .mock_async(|when, then| {
            exact(when, "GET", &cf_path(""));
            then.status(200).json_body(cf_ok(
                json!({"id": CF_NAMESPACE, "title": "t", "supports_url_encoding": true}),
            ));
        })
        .await;
    let put = server
        .mock_async(|when, then| {
            exact(when, "PUT", &cf_path("/values/a%20b"));
            then.status(200).json_body(cf_ok(json!(null)));
        })
        .await;
    let client = cloudflare_client(&server);
    let options = || edgekv::cloudflare::PutOptions::new();
    let stated = client.namespace(CF_NAMESPACE).with_url_encoding(true);
    stated.put("a b", "v", options()).await.unwrap();
    assert_eq!(
        (put.calls_async().await, lookup.calls_async().await),
        (1, 0)
    );

    for _ in 0..3 {
        let fresh_handle = client.namespace(CF_NAMESPACE);
        fresh_handle.put("a b", "v", options()).await.unwrap();
    }
    assert_eq!(
        (put.calls_async().await, lookup.calls_async().await),
        (4, 1)
    );
}

/// One call can have its own deadline: the handle's retry deadline for that call, ending it (a
/// timeout) while the client's own would still wait.
#[cfg(feature = "emulator")]
#[tokio::test]
async fn a_handle_with_a_deadline_ends_its_call_in_time_on_both_providers() {
    use std::time::{Duration, Instant};

    use edgekv::emulator::faults::Reply;

    use crate::support::cloudflare_at;
    use crate::support::faulty::FaultyServer;

    let deadline = Duration::from_millis(300);
    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let store = fastly_at(&server.url(), FASTLY_TOKEN, fast_policy()).store(FASTLY_STORE);
    let started = Instant::now();
    let error = store.with_deadline(deadline).get("k").await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let server = FaultyServer::start(vec![Reply::StallHead]).await;
    let client = cloudflare_at(
        &server.url(),
        crate::support::cloudflare_token(),
        fast_policy(),
    );
    let namespace = client.namespace(CF_NAMESPACE).with_url_encoding(true);
    let started = Instant::now();
    let error = namespace
        .with_deadline(deadline)
        .get("k")
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// The done-when of issue 13, read from the emulator's request log: on handles whose state is
/// stated up front, the first get of a missing Fastly item and the first put of a key that needs
/// encoding on Cloudflare each make exactly one request, the call's own.
#[cfg(feature = "emulator")]
#[tokio::test]
async fn handles_with_their_state_stated_make_exactly_one_request_each() {
    use edgekv::emulator::{Api, Emulator};

    let emu = Emulator::new().await.unwrap();
    let store_id = emu.fastly_store().await.unwrap().id().to_string();
    let namespace_id = emu.cloudflare_namespace().await.unwrap().id().to_string();
    // Fresh clients: nothing learnt by the fixture's calls.
    let fastly = emu.fastly_builder().build().unwrap();
    let cloudflare = emu.cloudflare_builder().build().unwrap();
    emu.clear_requests();

    let store = fastly.store(&store_id).known_to_exist();
    assert!(store.get("missing").await.unwrap().is_none());
    let namespace = cloudflare.namespace(&namespace_id).with_url_encoding(true);
    namespace
        .put("needs encoding/é", "v", Default::default())
        .await
        .unwrap();

    let requests = emu.requests();
    let seen: Vec<_> = requests
        .iter()
        .map(|r| (r.api, r.method.as_str(), r.path.as_str(), r.status))
        .collect();
    let fastly_get = format!("/resources/stores/kv/{store_id}/keys/missing");
    let cloudflare_put = format!(
        "/client/v4/accounts/{}/storage/kv/namespaces/{namespace_id}/values/needs%20encoding%2F%C3%A9",
        cloudflare.account_id()
    );
    assert_eq!(
        seen,
        [
            (Api::Fastly, "GET", fastly_get.as_str(), 404),
            (Api::Cloudflare, "PUT", cloudflare_put.as_str(), 200),
        ]
    );
}

/// Fastly's budget counts writes only, and so does the client-side limit made for it: with one
/// write allowed a minute, reads go at once, and a second write waits.
#[cfg(feature = "emulator")]
#[tokio::test]
async fn a_fastly_write_budget_does_not_delay_reads() {
    use std::time::{Duration, Instant};

    use edgekv::emulator::Emulator;
    use edgekv::policy::{ClientLimit, RequestPolicy};

    let emu = Emulator::new().await.unwrap();
    let store_id = emu.fastly_store().await.unwrap().id().to_string();
    let limit = ClientLimit::new(1, Duration::from_secs(60)).counts_reads(false);
    let policy = RequestPolicy::default().client_limit(Some(limit));
    let client = emu.fastly_builder().policy(policy).build().unwrap();
    let store = client.store(&store_id);
    store.put("k", "v", Default::default()).await.unwrap();

    let started = Instant::now();
    for _ in 0..20 {
        assert!(store.get("k").await.unwrap().is_some());
    }
    assert!(started.elapsed() < Duration::from_secs(30), "reads waited");
    let second_write = store.put("k", "w", Default::default());
    let waited = tokio::time::timeout(Duration::from_millis(300), second_write).await;
    assert!(
        waited.is_err(),
        "the second write went out inside the window"
    );
}
