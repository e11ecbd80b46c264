//! Shared by the integration tests: exact request matching, clients pointed at a test server,
//! the recorded fixtures under `tests/fixtures/` and their replay, and the modules below.
#![allow(dead_code)] // Each suite uses part of it, and some suites need the emulator feature.

#[cfg(feature = "emulator")]
pub mod backend;
pub mod child;
pub mod envelope;
#[cfg(feature = "emulator")]
pub mod faulty;
pub mod hostile;
#[cfg(feature = "emulator")]
pub mod provider;
#[cfg(feature = "emulator")]
pub mod scripted;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edgekv::policy::RequestPolicy;
use edgekv::transport::{Credential, Transport};
use httpmock::{MockServer, When};
use serde::Deserialize;

pub const FASTLY_TOKEN: &str = "fastly-test-token";
pub const CLOUDFLARE_TOKEN: &str = "cloudflare-test-token";
/// How [`CLOUDFLARE_TOKEN`] travels.
pub const CF_BEARER: &str = "Bearer cloudflare-test-token";

/// Matches only a request with this method and exactly this path and query, as sent on the wire
/// (still percent-encoded, parameters in order), and without progenitor's `api-version` header.
pub fn exact(when: When, method: &str, path_and_query: &str) -> When {
    let method = method.to_string();
    let expected = path_and_query.to_string();
    when.is_true(move |req| {
        req.method_str() == method
            && req.uri().path_and_query().map(|pq| pq.as_str()) == Some(expected.as_str())
    })
    .header_missing("api-version")
}

pub fn fastly(server: &MockServer) -> edgekv::fastly::raw::Client {
    let credential = Credential::FastlyToken(FASTLY_TOKEN.to_string());
    edgekv::fastly::raw::Client::new(&server.base_url(), Transport::new(credential).unwrap())
}

pub fn cloudflare(server: &MockServer) -> edgekv::cloudflare::raw::Client {
    let credential = Credential::CloudflareToken(CLOUDFLARE_TOKEN.to_string());
    edgekv::cloudflare::raw::Client::new(&server.base_url(), Transport::new(credential).unwrap())
}

/// Reads a streamed value to its end (both raw modules re-export the same `ByteStream`).
pub async fn collect(stream: edgekv::fastly::raw::ByteStream) -> Vec<u8> {
    use futures_util::TryStreamExt as _;
    let chunks = stream.into_inner().map_ok(|b| b.to_vec());
    chunks.try_concat().await.unwrap()
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A go-vcr cassette: real requests and responses recorded against api.fastly.com.
#[derive(Debug, Deserialize)]
pub struct Cassette {
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Deserialize)]
pub struct Interaction {
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

#[derive(Debug, Deserialize)]
pub struct RecordedRequest {
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    pub url: String,
    pub method: String,
}

#[derive(Debug, Deserialize)]
pub struct RecordedResponse {
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    pub code: u16,
}

impl RecordedRequest {
    /// The path and query as sent, without the recorded host.
    pub fn path_and_query(&self) -> &str {
        self.url
            .strip_prefix("https://api.fastly.com")
            .unwrap_or(&self.url)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl RecordedResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a BTreeMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// Every go-fastly cassette, by path relative to `tests/fixtures/go-fastly`, in a stable order.
pub fn fastly_cassettes() -> Vec<(String, Cassette)> {
    let root = fixtures_dir().join("go-fastly");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let cassette = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, cassette)
        })
        .collect()
}

/// The response bodies of cloudflare-go's KV unit tests, by test name and response name.
pub fn cloudflare_go_body(test: &str, response: &str) -> serde_json::Value {
    #[derive(Deserialize)]
    struct Entry {
        test: String,
        responses: BTreeMap<String, serde_json::Value>,
    }
    let text =
        std::fs::read_to_string(fixtures_dir().join("cloudflare-go-v0-test-bodies.yaml")).unwrap();
    let entries: Vec<Entry> = serde_yaml::from_str(&text).unwrap();
    let entry = entries
        .into_iter()
        .find(|e| e.test == test)
        .unwrap_or_else(|| panic!("no fixture {test}"));
    entry
        .responses
        .get(response)
        .cloned()
        .unwrap_or_else(|| panic!("no response {response} in {test}"))
}

pub const CF_ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
pub const CF_NAMESPACE: &str = "0f2ac74b498b48028cb68387c421e279";

/// The `i`th of many keys; they sort in numeric order.
pub fn numbered_key(i: usize) -> String {
    format!("key-{i:05}")
}

/// The default policy with retries that wait milliseconds, not seconds, so failure cases stay
/// fast; the number of attempts is the default's.
pub fn fast_policy() -> RequestPolicy {
    let mut policy = RequestPolicy::default();
    policy.retry.base_delay = std::time::Duration::from_millis(1);
    policy.retry.max_delay = std::time::Duration::from_millis(5);
    policy
}

/// The Cloudflare facade at `url` with `auth`, for the test account, under `policy`.
pub fn cloudflare_at(
    url: &str,
    auth: impl Into<edgekv::cloudflare::Auth>,
    policy: RequestPolicy,
) -> edgekv::cloudflare::Client {
    edgekv::cloudflare::Client::builder(auth, CF_ACCOUNT)
        .base_url(url)
        .policy(policy)
        .build()
        .unwrap()
}

/// The Cloudflare facade pointed at the mock server, under [`fast_policy`].
pub fn cloudflare_client(server: &MockServer) -> edgekv::cloudflare::Client {
    cloudflare_at(&server.base_url(), cloudflare_token(), fast_policy())
}

/// [`CLOUDFLARE_TOKEN`] as a credential.
pub fn cloudflare_token() -> edgekv::cloudflare::Auth {
    edgekv::cloudflare::Auth::ApiToken(CLOUDFLARE_TOKEN.to_string())
}

/// A path under the test namespace, e.g. `cf_path("/values/k")`.
pub fn cf_path(rest: &str) -> String {
    format!("/accounts/{CF_ACCOUNT}/storage/kv/namespaces/{CF_NAMESPACE}{rest}")
}

pub const FASTLY_STORE: &str = "iaa48y0oxw13s12xpfdkk9";

/// The Fastly facade at `url` with `token`, under `policy`.
pub fn fastly_at(url: &str, token: &str, policy: RequestPolicy) -> edgekv::fastly::Client {
    edgekv::fastly::Client::builder(token)
        .base_url(url)
        .policy(policy)
        .build()
        .unwrap()
}

/// The Fastly facade pointed at the mock server, under [`fast_policy`].
pub fn fastly_client(server: &MockServer) -> edgekv::fastly::Client {
    fastly_at(&server.base_url(), FASTLY_TOKEN, fast_policy())
}

/// A path under the test store, e.g. `fastly_path("/keys/apple")`.
pub fn fastly_path(rest: &str) -> String {
    format!("/resources/stores/kv/{FASTLY_STORE}{rest}")
}

/// Serves one recorded interaction: its response, only to a request with the recorded method,
/// path and query (and generation header and body, where recorded; a batch body is compared by
/// the caller, since the recording's whitespace is go-fastly's own).
pub async fn serve_recorded<'a>(
    server: &'a MockServer,
    interaction: &Interaction,
) -> httpmock::Mock<'a> {
    let (request, response) = (&interaction.request, &interaction.response);
    server
        .mock_async(|when, then| {
            let mut when = exact(when, &request.method, request.path_and_query());
            if let Some(generation) = request.header("If-Generation-Match") {
                when = when.header("if-generation-match", generation);
            }
            if !request.body.is_empty() && !request.path_and_query().ends_with("/batch") {
                when.body(request.body.clone());
            }
            let mut then = then.status(response.code).body(response.body.clone());
            for (name, values) in &response.headers {
                if !name.eq_ignore_ascii_case("content-length") {
                    for value in values {
                        then = then.header(name.clone(), value.clone());
                    }
                }
            }
        })
        .await
}

/// One go-fastly interaction being replayed: `server` answers only its recorded request.
pub struct Replay<'a> {
    /// Which recording and interaction, for failure messages.
    pub context: String,
    pub request: &'a RecordedRequest,
    pub response: &'a RecordedResponse,
    pub server: &'a MockServer,
    url: url::Url,
}

impl Replay<'_> {
    /// A query parameter of the recorded request.
    pub fn query(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The recorded path's segments after `/resources/stores/kv`: `[]`, `[store]`,
    /// `[store, "keys"]`, `[store, "keys", key]` or `[store, "batch"]`.
    pub fn segments(&self) -> Vec<&str> {
        self.url.path_segments().unwrap().skip(3).collect()
    }

    /// The recorded `If-Generation-Match`.
    pub fn generation(&self) -> Option<u64> {
        self.request
            .header("If-Generation-Match")
            .map(|g| g.parse().unwrap())
    }

    /// Whether the service answered with a success.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.response.code)
    }
}

/// Whether a replay sent its interaction's request.
pub enum Replayed {
    Sent,
    /// The client under test has no call for it (the raw client and the ndjson batch).
    NotSent,
}

/// Replays every go-fastly interaction through `replay`, each against its own mock, and checks
/// that every request sent was the recorded one.
pub async fn replay_every_recording(mut replay: impl AsyncFnMut(&Replay<'_>) -> Replayed) {
    let mut replayed = 0;
    for (name, cassette) in fastly_cassettes() {
        for (i, interaction) in cassette.interactions.iter().enumerate() {
            let (request, response) = (&interaction.request, &interaction.response);
            let server = MockServer::start_async().await;
            let mock = serve_recorded(&server, interaction).await;
            let recording = Replay {
                context: format!("{name} #{i}: {} {}", request.method, request.url),
                request,
                response,
                url: url::Url::parse(&request.url).unwrap(),
                server: &server,
            };
            if let Replayed::Sent = replay(&recording).await {
                mock.assert_async().await;
            }
            replayed += 1;
        }
    }
    assert_eq!(replayed, 50, "every recorded interaction is replayed");
}

/// Fastly bulk options with `n` requests in flight.
pub fn fastly_concurrency(n: usize) -> edgekv::fastly::BulkOptions {
    edgekv::fastly::BulkOptions::default().concurrency(n)
}
