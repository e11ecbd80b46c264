//! A tour of both providers through the facade, against an emulator this example starts itself:
//! no credentials, no network. With `-- --live` it talks to the real services instead, using
//! FASTLY_API_TOKEN, CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID (it creates, then deletes,
//! a scratch store and namespace).
//!
//! Run: `cargo run --example quickstart --features emulator`

use edgekv::Body;
use edgekv::emulator::{DEFAULT_ACCOUNT, DEFAULT_TOKEN, Emulator, EmulatorConfig};
use edgekv::{cloudflare, fastly};
use futures_util::{StreamExt as _, TryStreamExt as _};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let live = std::env::args().any(|a| a == "--live");
    let (emulator, fastly, cloudflare) = if live {
        println!("talking to the real services");
        (
            None,
            fastly::Client::from_env()?,
            cloudflare::Client::from_env()?,
        )
    } else {
        let emulator = Emulator::start(EmulatorConfig::default()).await?;
        println!("emulator at {}", emulator.fastly_url());
        let fastly = fastly::Client::builder(DEFAULT_TOKEN)
            .base_url(emulator.fastly_url())
            .build()?;
        let cloudflare = cloudflare::Client::builder(DEFAULT_TOKEN, DEFAULT_ACCOUNT)
            .base_url(emulator.cloudflare_url())
            .build()?;
        (Some(emulator), fastly, cloudflare)
    };
    fastly_tour(&fastly).await?;
    cloudflare_tour(&cloudflare).await?;
    if let Some(emulator) = emulator {
        emulator.stop().await;
    }
    Ok(())
}

/// 256 KiB sent from a stream of 16 KiB chunks, never held whole by the client.
fn streamed_value() -> Body {
    let chunks = futures_util::stream::iter(0..16u8)
        .map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a' + i; 16 * 1024])));
    Body::from_stream(chunks, Some(256 * 1024))
}

async fn fastly_tour(client: &fastly::Client) -> Result<(), edgekv::Error> {
    println!("\n== Fastly KV Store");
    let info = client.create_store("edgekv-quickstart", None).await?;
    println!("created store {} ({})", info.name, info.id);
    let store = client.store(&info.id);

    store
        .put("big", streamed_value(), fastly::PutOptions::new())
        .await?;
    let item = store.get("big").await?.expect("just written");
    let generation = item.generation();
    let mut received = 0;
    let mut body = item.into_body();
    while let Some(chunk) = body.next().await {
        received += chunk?.len();
    }
    println!(
        "streamed 256 KiB up and {} KiB back down, generation {generation}",
        received / 1024
    );

    let stale = fastly::PutOptions::new().if_generation_match(generation - 1);
    match store.put("big", "conflict", stale).await {
        Err(e) if e.is_precondition_failed() => {
            println!("a write with a stale generation was refused: {e}")
        }
        other => println!("unexpected: {other:?}"),
    }

    let entries = (0..2_500)
        .map(|i| fastly::BulkEntry::new(format!("user/{i:04}"), format!("{{\"n\":{i}}}")));
    let report = store
        .bulk_write(entries, &fastly::BulkOptions::default())
        .await?;
    println!(
        "batch: {} written, {} failed of {}",
        report.written,
        report.failed.len(),
        report.submitted()
    );

    let mut pages = store.key_pages(fastly::ListKeys::new().prefix("user/").limit(1000));
    while let Some(page) = pages.try_next().await? {
        println!(
            "listed a page of {} keys, next cursor {:?}",
            page.keys.len(),
            page.cursor
        );
    }

    let cleared = client
        .delete_store_with_contents(&info.id, &fastly::BulkOptions::default().concurrency(16))
        .await?;
    println!("deleted {} items and the store", cleared.deleted);
    Ok(())
}

async fn cloudflare_tour(client: &cloudflare::Client) -> Result<(), edgekv::Error> {
    println!("\n== Cloudflare Workers KV");
    let info = client.create_namespace("edgekv-quickstart").await?;
    println!("created namespace {} ({})", info.title, info.id);
    let namespace = client.namespace(&info.id);

    let options = cloudflare::PutOptions::new()
        .expiration_ttl(3600)
        .metadata(serde_json::json!({"kind": "demo"}));
    namespace.put("big", streamed_value(), options).await?;
    let value = namespace.get("big").await?.expect("just written");
    let expiration = value.expiration();
    println!(
        "streamed 256 KiB up and {} KiB back down, expires at {expiration:?}",
        value.bytes().await?.len() / 1024
    );
    println!(
        "its metadata: {}",
        namespace.metadata("big").await?.unwrap_or_default()
    );

    let entries = (0..2_500)
        .map(|i| cloudflare::BulkEntry::text(format!("user/{i:04}"), format!("{{\"n\":{i}}}")));
    let report = namespace
        .bulk_write(entries, &cloudflare::BulkOptions::default())
        .await?;
    println!(
        "bulk: {} written, {} failed of {}",
        report.written,
        report.failed.len(),
        report.submitted()
    );

    let mut pages = namespace.key_pages(cloudflare::ListKeys::new().prefix("user/").limit(1000));
    while let Some(page) = pages.try_next().await? {
        println!(
            "listed a page of {} keys, next cursor {}",
            page.keys.len(),
            if page.cursor.is_some() {
                "given"
            } else {
                "none"
            }
        );
    }

    client.delete_namespace(&info.id).await?;
    println!("deleted the namespace");
    Ok(())
}
