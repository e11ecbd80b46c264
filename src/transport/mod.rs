//! The one place every request of both providers passes through.
//!
//! Each generated client carries a [`Transport`] (progenitor's "inner" value): the credential
//! and the [`RequestPolicy`]. Its `ClientHooks` route here: `pre` checks the request's path and
//! adds the credential as sensitive header values, per request, rather than as default headers of
//! the `reqwest::Client` (reqwest drops `Authorization` on a cross-host redirect but would forward
//! a custom header like `Fastly-Key`); `exec` puts a read limit on the answer. The answer's status
//! and headers reach the attempt loop inside progenitor's value or error; nothing is recorded on
//! the side. The facades run every call, generated or hand-written, through `call` or
//! `send`, which make the attempts: retries, the attempt timer and the call's deadline, the
//! client-side limit, rate-limit state and a tracing span each. The core names no provider: each
//! provider's `raw.rs` registers its hooks, operation table and what each operation answers.
//!
//! - `credential.rs`: the credential, sent as sensitive header values.
//! - `hooks.rs`: progenitor's `ClientHooks` for both generated clients (registered by each
//!   provider's `raw.rs`), and the answer headers the attempt loop reads.
//! - `attempt.rs`: the attempt loop (retries, timers, tracing) for generated and hand-written
//!   calls.
//! - `answer.rs`: answers and failures into the crate's error.
//! - `observed.rs`: the answer of a successful call, for a caller that asks (`with_answer`).
//! - `segment.rs`: the one path-segment encoder and the pre-send path check.
//! - `capped.rs`: the read limit of every answer's body.
//! - `generated.rs`: leaner stand-ins for progenitor's helpers, called by the generated code.

pub(crate) mod answer;
pub(crate) mod attempt;
pub(crate) mod capped;
mod credential;
pub(crate) mod generated;
pub(crate) mod hooks;
pub(crate) mod observed;
pub(crate) mod segment;

use std::fmt;
use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderName, HeaderValue};

pub(crate) use answer::{ErrorBody, decode_json, from_undecoded_body};
pub(crate) use attempt::{Answered, Call, call, call_until_done, send};
pub use credential::Credential;
pub(crate) use hooks::hooks_through_transport;
pub use observed::{Answer, WithAnswer, WithAnswerFuture};

use crate::error::{Error, InvalidInput, Provider};
use crate::policy::{Limiter, RateLimit, RequestPolicy};

/// What a generated client applies to each request: the credential and the request policy.
/// Cheap to clone; clones share the rate-limit state and the client-side limit.
#[derive(Clone)]
pub struct Transport {
    credential_headers: Arc<[(HeaderName, HeaderValue)]>,
    /// The credential's secrets, to redact from errors should a server echo them.
    credential_secrets: Arc<[String]>,
    shared: Arc<Shared>,
}

struct Shared {
    policy: RequestPolicy,
    limiter: Option<Limiter>,
    rate_limit: Mutex<Option<RateLimit>>,
}

impl Shared {
    fn new(policy: RequestPolicy) -> Arc<Self> {
        let limiter = policy.client_limit.map(Limiter::new);
        Arc::new(Shared {
            policy,
            limiter,
            rate_limit: Mutex::new(None),
        })
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .credential_headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("Transport")
            .field("credential_headers", &names)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport that authenticates every request with `credential`, under the default
    /// [`RequestPolicy`]. Fails if the credential cannot be sent as a header value.
    pub fn new(credential: Credential) -> Result<Self, InvalidInput> {
        crate::http::install_crypto_provider();
        Ok(Transport {
            credential_headers: credential.headers()?.into(),
            credential_secrets: credential.secrets().into(),
            shared: Shared::new(RequestPolicy::default()),
        })
    }

    /// A transport that sends no credential (for servers that need none, such as a local mock).
    pub fn anonymous() -> Self {
        crate::http::install_crypto_provider();
        Transport {
            credential_headers: Arc::new([]),
            credential_secrets: Arc::new([]),
            shared: Shared::new(RequestPolicy::default()),
        }
    }

    /// The same credential under another policy.
    pub fn with_policy(self, policy: RequestPolicy) -> Self {
        Transport {
            credential_headers: self.credential_headers,
            credential_secrets: self.credential_secrets,
            shared: Shared::new(policy),
        }
    }

    /// `error` without the credential in anything a server said.
    pub(crate) fn redact_credential(&self, error: Error) -> Error {
        let secrets = self
            .credential_secrets
            .iter()
            .fold(crate::error::Secrets::new(), |secrets, secret| {
                secrets.with(secret.as_bytes(), "<credential>")
            });
        error.redact(&secrets)
    }

    /// The policy requests are sent under.
    pub fn policy(&self) -> &RequestPolicy {
        &self.shared.policy
    }

    /// What the service said about its rate limit on the latest answer that told.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.shared
            .rate_limit
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Prepares an outgoing request: adds the credential. (The generated code no longer adds
    /// progenitor's `api-version` header: `codegen.rs` transform T4.)
    pub(crate) fn prepare(&self, request: &mut reqwest::Request) {
        let headers = request.headers_mut();
        for (name, value) in self.credential_headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The transport and `reqwest::Client` a facade's builder ends with: the caller's own client as it
/// is, or one built with the policy's timeouts, whose read timer the transport then relies on.
pub(crate) fn with_http_client(
    transport: Transport,
    http: Option<reqwest::Client>,
    provider: Provider,
) -> Result<(Transport, reqwest::Client), Error> {
    match http {
        Some(http) => Ok((transport, http)),
        None => {
            let http = crate::http::client_builder_with(&transport.policy().timeouts)
                .build()
                .map_err(|e| Error::transport(provider, "building the HTTP client failed", e))?;
            Ok((transport, http))
        }
    }
}
