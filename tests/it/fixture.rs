//! The emulator as a test fixture: a two-provider service test whose setup is three lines of
//! edgekv's public API, a clock the test moves past a TTL, and the request log asserted on.

use std::time::Duration;

use edgekv::emulator::{Api, Emulator};
use edgekv::{cloudflare, fastly};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The service under test: caches a session in Cloudflare KV and mirrors it to a Fastly store,
/// both for a minute.
async fn remember(
    cf: &cloudflare::Namespace,
    store: &fastly::Store,
    id: &str,
    body: &str,
) -> Result {
    let cf_options = cloudflare::PutOptions::new().expiration_ttl(60);
    cf.put(id, body.to_string(), cf_options).await?;
    let fastly_options = fastly::PutOptions::new().ttl_seconds(60);
    store.put(id, body.to_string(), fastly_options).await?;
    Ok(())
}

#[tokio::test]
async fn a_two_provider_service_test_sees_a_ttl_pass_without_sleeping() -> Result {
    let emu = Emulator::new().await?;
    let cf = emu.cloudflare_namespace().await?;
    let store = emu.fastly_store().await?;
    remember(&cf, &store, "session/1", "{\"user\":7}").await?;

    let read = cf.get("session/1").await?.expect("cached in Cloudflare");
    assert_eq!(read.expiration(), Some(emu.now() + 60));
    assert_eq!(read.bytes().await?, "{\"user\":7}");
    let mirrored = store.get("session/1").await?.expect("mirrored to Fastly");
    let generation = mirrored.generation();

    emu.advance(Duration::from_secs(59));
    assert!(cf.get("session/1").await?.is_some(), "not yet expired");
    assert!(store.get("session/1").await?.is_some(), "not yet expired");
    emu.advance(Duration::from_secs(2));
    assert!(
        cf.get("session/1").await?.is_none(),
        "expired in Cloudflare"
    );
    assert!(store.get("session/1").await?.is_none(), "expired in Fastly");

    // Generations still rise on the moved clock.
    store
        .put("session/1", "again", fastly::PutOptions::new())
        .await?;
    let again = store.get("session/1").await?.expect("written again");
    assert!(again.generation() > generation);

    // The log: the Cloudflare write went out once, with its TTL, its credential not logged.
    let requests = emu.requests();
    let puts: Vec<_> = requests
        .iter()
        .filter(|r| r.api == Api::Cloudflare && r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert!(
        puts[0].path.ends_with("/values/session%2F1"),
        "{}",
        puts[0].path
    );
    assert_eq!(puts[0].query.as_deref(), Some("expiration_ttl=60"));
    assert_eq!(puts[0].header("authorization"), Some("[redacted]"));
    assert_eq!(puts[0].body_len, "{\"user\":7}".len());
    assert_eq!(puts[0].status, 200);
    let last_fastly_get = requests
        .iter()
        .rfind(|r| r.api == Api::Fastly && r.method == "GET")
        .expect("Fastly reads");
    assert_eq!(last_fastly_get.status, 200);
    assert_eq!(last_fastly_get.header("fastly-key"), Some("[redacted]"));
    Ok(())
}

#[tokio::test]
async fn a_known_namespace_puts_in_exactly_one_request() -> Result {
    let emu = Emulator::new().await?;
    let cf = emu.cloudflare_namespace().await?;
    emu.clear_requests();
    cf.put("a b", "1", cloudflare::PutOptions::new()).await?;
    let requests = emu.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].method, "PUT");
    assert!(requests[0].path.ends_with("/values/a%20b"));
    Ok(())
}

#[tokio::test]
async fn seeded_entries_read_back_and_are_not_requests() -> Result {
    let emu = Emulator::new().await?;
    let cf = emu.cloudflare_namespace().await?;
    let store = emu.fastly_store().await?;
    emu.clear_requests();
    emu.seed_cloudflare(cf.id(), [("a", "1"), ("b", "2")])?;
    emu.seed_fastly(store.id(), [("a", b"\x00\xff".to_vec())])?;
    assert!(emu.requests().is_empty());
    assert_eq!(cf.get("b").await?.expect("seeded").bytes().await?, "2");
    let item = store.get("a").await?.expect("seeded");
    assert!(item.generation() > 1 << 32);
    assert_eq!(item.bytes().await?.as_ref(), b"\x00\xff");

    let missing = emu.seed_cloudflare("0000", [("a", "1")]).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let refused = emu.seed_fastly(store.id(), [("", "1")]).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    Ok(())
}

#[tokio::test]
async fn expired_keys_leave_the_listings() -> Result {
    use futures_util::TryStreamExt as _;
    let emu = Emulator::new().await?;
    let cf = emu.cloudflare_namespace().await?;
    let options = cloudflare::PutOptions::new().expiration(emu.now() + 120);
    cf.put("later", "x", options).await?;
    cf.put("kept", "x", cloudflare::PutOptions::new()).await?;
    let names = |keys: Vec<cloudflare::Key>| keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
    let listed = cf.keys(cloudflare::ListKeys::new()).try_collect().await?;
    assert_eq!(names(listed), ["kept", "later"]);
    emu.advance(Duration::from_secs(120));
    let listed = cf.keys(cloudflare::ListKeys::new()).try_collect().await?;
    assert_eq!(names(listed), ["kept"]);
    Ok(())
}

#[tokio::test]
async fn a_token_no_header_can_carry_is_refused_at_start_not_by_a_panic_later() {
    let config = edgekv::emulator::EmulatorConfig::default().fastly_tokens(["bad\ntoken"]);
    let error = match Emulator::start(config).await {
        Ok(_) => panic!("started with a token no header can carry"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}
