//! Either provider's facade behind one face, so that a behaviour both share is written once and
//! run on each (the fault suite): a client, the few calls the behaviours make, and each
//! service's own answers to them.

use edgekv::policy::{RateLimit, RequestPolicy};
use edgekv::{Body, Error, ValueStream, cloudflare, fastly};
use serde_json::json;

use super::envelope::{cf_failure, cf_ok};
use super::faulty::Reply;
use super::{
    CF_ACCOUNT, CF_BEARER, CF_NAMESPACE, FASTLY_STORE, FASTLY_TOKEN, cloudflare_at,
    cloudflare_token, fastly_at,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Fastly,
    Cloudflare,
}

/// A facade client of either provider, on the test store or namespace.
pub enum Client {
    Fastly(fastly::Client),
    Cloudflare(cloudflare::Client),
}

impl Provider {
    /// The facade at `url` under `policy`, with the test credential.
    pub fn client(self, url: &str, policy: RequestPolicy) -> Client {
        match self {
            Provider::Fastly => Client::Fastly(fastly_at(url, FASTLY_TOKEN, policy)),
            Provider::Cloudflare => {
                Client::Cloudflare(cloudflare_at(url, cloudflare_token(), policy))
            }
        }
    }

    /// The facade at `url` under `policy`, sending through the caller's own `http` client.
    pub fn client_over(self, url: &str, policy: RequestPolicy, http: reqwest::Client) -> Client {
        match self {
            Provider::Fastly => Client::Fastly(
                fastly::Client::builder(FASTLY_TOKEN)
                    .base_url(url)
                    .policy(policy)
                    .http_client(http)
                    .build()
                    .unwrap(),
            ),
            Provider::Cloudflare => Client::Cloudflare(
                cloudflare::Client::builder(cloudflare_token(), CF_ACCOUNT)
                    .base_url(url)
                    .policy(policy)
                    .http_client(http)
                    .build()
                    .unwrap(),
            ),
        }
    }

    /// The answer to [`Client::details`].
    pub fn details(self) -> Reply {
        match self {
            Provider::Fastly => Reply::json(
                200,
                json!({"id": FASTLY_STORE, "name": "kv-store-test-store"}),
            ),
            Provider::Cloudflare => {
                Reply::json(200, cf_ok(json!({"id": CF_NAMESPACE, "title": "t"})))
            }
        }
    }

    /// The answer to [`Client::create`].
    pub fn created(self) -> Reply {
        match self {
            Provider::Fastly => Reply::json(201, json!({"id": FASTLY_STORE, "name": "title"})),
            Provider::Cloudflare => {
                Reply::json(200, cf_ok(json!({"id": CF_NAMESPACE, "title": "title"})))
            }
        }
    }

    /// The answer to [`Client::get`] of a key holding `value`.
    pub fn value(self, value: &str) -> Reply {
        let reply = Reply::body(200, "application/octet-stream", value);
        match self {
            Provider::Fastly => reply
                .header("generation", "1750707676353461")
                .header("metadata", ""),
            Provider::Cloudflare => reply,
        }
    }

    /// The answer to [`Client::put`].
    pub fn written(self) -> Reply {
        match self {
            Provider::Fastly => Reply::status(200),
            Provider::Cloudflare => Reply::json(200, cf_ok(json!(null))),
        }
    }

    /// A failure with `status`, as the service words it: Fastly's bare status, Cloudflare's
    /// envelope with the code it gives that status.
    pub fn failure(self, status: u16) -> Reply {
        match self {
            Provider::Fastly => Reply::status(status),
            Provider::Cloudflare => {
                let code = match status {
                    429 => 971,
                    403 => 10000,
                    _ => 10001,
                };
                Reply::json(status, cf_failure(code, "failed"))
            }
        }
    }

    /// `reply` telling that `remaining` requests are left for the next `reset_in` seconds, in
    /// the service's own headers.
    pub fn rate_limited(self, reply: Reply, remaining: u64, reset_in: u64) -> Reply {
        match self {
            Provider::Fastly => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                reply
                    .header("fastly-ratelimit-remaining", remaining.to_string())
                    .header("fastly-ratelimit-reset", (now + reset_in).to_string())
            }
            Provider::Cloudflare => reply
                .header(
                    "ratelimit",
                    format!("\"default\";r={remaining};t={reset_in}"),
                )
                .header("ratelimit-policy", "\"default\";q=1200;w=300"),
        }
    }

    /// The request header that carries the credential, and its value.
    pub fn credential_header(self) -> (&'static str, String) {
        match self {
            Provider::Fastly => ("fastly-key", FASTLY_TOKEN.to_string()),
            Provider::Cloudflare => ("authorization", CF_BEARER.to_string()),
        }
    }

    /// The path [`Client::details`] requests.
    pub fn details_path(self) -> String {
        match self {
            Provider::Fastly => format!("/resources/stores/kv/{FASTLY_STORE}"),
            Provider::Cloudflare => {
                format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces/{CF_NAMESPACE}")
            }
        }
    }
}

impl Client {
    /// Reads the store's or the namespace's details: a JSON read, safe to retry.
    pub async fn details(&self) -> Result<(), Error> {
        match self {
            Client::Fastly(c) => c.get_store(FASTLY_STORE).await.map(drop),
            Client::Cloudflare(c) => c.get_namespace(CF_NAMESPACE).await.map(drop),
        }
    }

    /// Creates a store or a namespace: a write a lost answer makes unsafe to repeat.
    pub async fn create(&self) -> Result<(), Error> {
        match self {
            Client::Fastly(c) => c.create_store("title", None).await.map(drop),
            Client::Cloudflare(c) => c.create_namespace("title").await.map(drop),
        }
    }

    /// Reads a key: its value still to be read, so a fault in the body shows apart from one in
    /// the head.
    pub async fn get(&self, key: &str) -> Result<Option<ValueStream>, Error> {
        match self {
            Client::Fastly(c) => Ok(c
                .store(FASTLY_STORE)
                .get(key)
                .await?
                .map(fastly::Item::into_body)),
            Client::Cloudflare(c) => Ok(c
                .namespace(CF_NAMESPACE)
                .get(key)
                .await?
                .map(cloudflare::Value::into_body)),
        }
    }

    /// Writes a key with no option: a plain overwrite, safe to repeat.
    pub async fn put(&self, key: &str, value: impl Into<Body>) -> Result<(), Error> {
        match self {
            Client::Fastly(c) => {
                let options = fastly::PutOptions::new();
                c.store(FASTLY_STORE).put(key, value, options).await
            }
            Client::Cloudflare(c) => {
                let options = cloudflare::PutOptions::new();
                c.namespace(CF_NAMESPACE)
                    .put(key, value, options)
                    .await
                    .map(drop)
            }
        }
    }

    /// What the service said about its rate limit on the latest answer that told.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Client::Fastly(c) => c.rate_limit(),
            Client::Cloudflare(c) => c.rate_limit(),
        }
    }
}
