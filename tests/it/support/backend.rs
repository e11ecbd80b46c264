//! Two backends for behaviour tests written once: an httpmock server that answers exactly the
//! exchanges a test declares (checking the requests' wire shape), and the emulator, which
//! ignores the declarations and answers from its own semantics. The same assertions must hold
//! on both.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use edgekv::emulator::{DEFAULT_ACCOUNT, DEFAULT_TOKEN, Emulator, EmulatorConfig};
use edgekv::policy::RequestPolicy;
use edgekv::{cloudflare, fastly};
use httpmock::MockServer;
use httpmock::prelude::HttpMockResponse;

use super::envelope::cf_ok;
use super::{exact, fast_policy, fastly_at};

type Queue = Arc<Mutex<VecDeque<HttpMockResponse>>>;

/// The Fastly facade at `url` with the emulator's default token, under `policy`.
pub fn emulator_fastly(url: &str, policy: RequestPolicy) -> fastly::Client {
    fastly_at(url, DEFAULT_TOKEN, policy)
}

/// The Cloudflare facade at `url` with the emulator's default token and account, under `policy`.
pub fn emulator_cloudflare(url: &str, policy: RequestPolicy) -> cloudflare::Client {
    cloudflare::Client::builder(DEFAULT_TOKEN, DEFAULT_ACCOUNT)
        .base_url(url)
        .policy(policy)
        .build()
        .unwrap()
}

pub enum Backend {
    Mock {
        server: MockServer,
        queues: Mutex<HashMap<(String, String), Queue>>,
    },
    Emulator(Emulator),
}

impl Backend {
    pub async fn mock() -> Self {
        Backend::Mock {
            server: MockServer::start_async().await,
            queues: Mutex::default(),
        }
    }

    pub async fn emulator() -> Self {
        Backend::Emulator(Emulator::start(EmulatorConfig::default()).await.unwrap())
    }

    pub fn is_mock(&self) -> bool {
        matches!(self, Backend::Mock { .. })
    }

    fn urls(&self) -> (String, String) {
        match self {
            Backend::Mock { server, .. } => (server.base_url(), server.base_url()),
            Backend::Emulator(emulator) => (emulator.fastly_url(), emulator.cloudflare_url()),
        }
    }

    pub fn fastly(&self) -> fastly::Client {
        emulator_fastly(&self.urls().0, fast_policy())
    }

    pub fn cloudflare(&self) -> cloudflare::Client {
        emulator_cloudflare(&self.urls().1, fast_policy())
    }

    /// The next request with this method, path and query (as sent) gets this answer from the
    /// mock; the emulator answers by itself. Several declarations of one request are answered in
    /// order.
    pub async fn expect(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) {
        let Backend::Mock { server, queues } = self else {
            return;
        };
        let mut response = HttpMockResponse::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let response = response.body(body.into()).build();
        let key = (method.to_string(), path_and_query.to_string());
        let (queue, new) = {
            let mut queues = queues.lock().unwrap();
            let new = !queues.contains_key(&key);
            (queues.entry(key).or_default().clone(), new)
        };
        queue.lock().unwrap().push_back(response);
        if new {
            server
                .mock_async(|when, then| {
                    exact(when, method, path_and_query);
                    then.respond_with(move |_| {
                        queue
                            .lock()
                            .unwrap()
                            .pop_front()
                            .unwrap_or_else(|| HttpMockResponse::builder().status(599).build())
                    });
                })
                .await;
        }
    }

    /// Declares a JSON answer.
    pub async fn expect_json(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        body: serde_json::Value,
    ) {
        self.expect(
            method,
            path_and_query,
            status,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    }

    /// Every declared answer was asked for (the mock only).
    pub fn assert_all_used(&self) {
        if let Backend::Mock { queues, .. } = self {
            for ((method, path), queue) in queues.lock().unwrap().iter() {
                assert!(
                    queue.lock().unwrap().is_empty(),
                    "declared but never requested: {method} {path}"
                );
            }
        }
    }

    /// A store to work in: the mock's fixed one, or one the emulator creates.
    pub async fn fastly_store(&self, client: &fastly::Client) -> String {
        let id = "behaviourstore00000000";
        self.expect_json(
            "POST",
            "/resources/stores/kv",
            201,
            serde_json::json!({"id": id, "name": "behaviour"}),
        )
        .await;
        client.create_store("behaviour", None).await.unwrap().id
    }

    /// A namespace to work in: the mock's fixed one, or one the emulator creates.
    pub async fn cloudflare_namespace(&self, client: &cloudflare::Client) -> String {
        let id = "0000000000000000000000000000beef";
        let body = cf_ok(
            serde_json::json!({"id": id, "title": "behaviour", "supports_url_encoding": true}),
        );
        self.expect_json(
            "POST",
            &format!("/accounts/{DEFAULT_ACCOUNT}/storage/kv/namespaces"),
            200,
            body,
        )
        .await;
        client
            .create_namespace("behaviour")
            .await
            .unwrap()
            .id
            .clone()
    }
}
