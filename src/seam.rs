//! The one place every request of both providers passes through on its way out.
//!
//! Each generated client carries a [`Seam`] (progenitor's "inner" value) and calls it from
//! `ClientHooks::pre` before sending. It adds the credential as sensitive header values, per
//! request, rather than as default headers of the `reqwest::Client`: reqwest drops
//! `Authorization` on a cross-host redirect but would forward a custom header like `Fastly-Key`.

use std::fmt;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// The header progenitor adds to every request with the spec's version; neither API uses it.
const API_VERSION_HEADER: &str = "api-version";

/// A credential for one of the two APIs. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// A Fastly API token, sent as `Fastly-Key`.
    FastlyToken(String),
    /// A Cloudflare API token, sent as `Authorization: Bearer <token>`.
    CloudflareToken(String),
    /// Cloudflare's older account email and global API key, sent as `X-Auth-Email` and
    /// `X-Auth-Key`.
    CloudflareGlobalKey {
        /// The account's email address.
        email: String,
        /// The global API key.
        key: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::FastlyToken(_) => f.write_str("FastlyToken(<redacted>)"),
            Credential::CloudflareToken(_) => f.write_str("CloudflareToken(<redacted>)"),
            Credential::CloudflareGlobalKey { .. } => {
                f.write_str("CloudflareGlobalKey { email: <redacted>, key: <redacted> }")
            }
        }
    }
}

impl Credential {
    /// The headers that carry this credential, marked sensitive (kept out of logs and HPACK
    /// tables). Fails if the secret cannot be a header value (a control character, say).
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let sensitive = |name: &str, value: &str| {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| format!("the credential for {name} is not a valid header value"))?;
            value.set_sensitive(true);
            Ok::<_, String>(value)
        };
        Ok(match self {
            Credential::FastlyToken(token) => {
                vec![(
                    HeaderName::from_static("fastly-key"),
                    sensitive("Fastly-Key", token)?,
                )]
            }
            Credential::CloudflareToken(token) => {
                vec![(
                    AUTHORIZATION,
                    sensitive("Authorization", &format!("Bearer {token}"))?,
                )]
            }
            Credential::CloudflareGlobalKey { email, key } => vec![
                (
                    HeaderName::from_static("x-auth-email"),
                    sensitive("X-Auth-Email", email)?,
                ),
                (
                    HeaderName::from_static("x-auth-key"),
                    sensitive("X-Auth-Key", key)?,
                ),
            ],
        })
    }
}

/// What a generated client applies to each request: the credential (and, as the crate grows,
/// the request policy). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Seam {
    credential: Option<Arc<Credential>>,
}

impl Seam {
    /// A seam that authenticates every request with `credential`.
    pub fn new(credential: Credential) -> Self {
        crate::http::install_crypto_provider();
        Seam {
            credential: Some(Arc::new(credential)),
        }
    }

    /// A seam that sends no credential (for servers that need none, such as a local mock).
    pub fn anonymous() -> Self {
        crate::http::install_crypto_provider();
        Seam { credential: None }
    }

    /// Prepares an outgoing request: drops progenitor's `api-version` header and adds the
    /// credential.
    pub(crate) fn prepare(&self, request: &mut reqwest::Request) -> Result<(), String> {
        let headers = request.headers_mut();
        headers.remove(API_VERSION_HEADER);
        if let Some(credential) = &self.credential {
            for (name, value) in credential.headers()? {
                headers.insert(name, value);
            }
        }
        Ok(())
    }
}

/// Routes a generated client's `pre` hook to its [`Seam`].
macro_rules! hooks_through_seam {
    ($client:ty) => {
        impl progenitor_client::ClientHooks<Seam> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                use progenitor_client::ClientInfo as _;
                self.inner()
                    .prepare(request)
                    .map_err(progenitor_client::Error::InvalidRequest)
            }
        }
    };
}

hooks_through_seam!(crate::fastly::raw::Client);
hooks_through_seam!(crate::cloudflare::raw::Client);
