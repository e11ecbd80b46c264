//! The one place every request of both providers passes through.
//!
//! Each generated client carries a [`Seam`] (progenitor's "inner" value); its `ClientHooks`
//! route here. `pre` adds the credential as sensitive header values, per request, rather than
//! as default headers of the `reqwest::Client`: reqwest drops `Authorization` on a cross-host
//! redirect but would forward a custom header like `Fastly-Key`. `post` records the status of
//! each answer for the facade (see [`observe`]). The facades' hand-written requests go through
//! the same hooks.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

use crate::error::{ApiError, ApiMessage, Error, InvalidInput, Provider, excerpt};

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
    /// tables).
    fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, InvalidInput> {
        let sensitive = |header: &'static str, value: &str| {
            let mut value =
                HeaderValue::from_str(value).map_err(|_| InvalidInput::Credential { header })?;
            value.set_sensitive(true);
            Ok::<_, InvalidInput>(value)
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

/// What a generated client applies to each request. Cheap to clone.
#[derive(Clone)]
pub struct Seam {
    credential_headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl fmt::Debug for Seam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .credential_headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        f.debug_struct("Seam")
            .field("credential_headers", &names)
            .finish_non_exhaustive()
    }
}

impl Seam {
    /// A seam that authenticates every request with `credential`. Fails if the credential
    /// cannot be sent as a header value.
    pub fn new(credential: Credential) -> Result<Self, InvalidInput> {
        crate::http::install_crypto_provider();
        Ok(Seam {
            credential_headers: credential.headers()?.into(),
        })
    }

    /// A seam that sends no credential (for servers that need none, such as a local mock).
    pub fn anonymous() -> Self {
        crate::http::install_crypto_provider();
        Seam {
            credential_headers: Arc::new([]),
        }
    }

    /// Prepares an outgoing request: drops progenitor's `api-version` header and adds the
    /// credential.
    pub(crate) fn prepare(&self, request: &mut reqwest::Request) {
        let headers = request.headers_mut();
        headers.remove(API_VERSION_HEADER);
        for (name, value) in self.credential_headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

tokio::task_local! {
    /// The status of the last answer within an [`observe`] scope.
    static OBSERVED_STATUS: Cell<Option<StatusCode>>;
}

/// Runs a generated call, keeping the HTTP status it was answered with: progenitor drops it
/// when a body does not decode, and an error page must still report its status.
pub(crate) async fn observe<T>(call: impl Future<Output = T>) -> (T, Option<StatusCode>) {
    OBSERVED_STATUS
        .scope(Cell::new(None), async move {
            let out = call.await;
            (out, OBSERVED_STATUS.with(Cell::get))
        })
        .await
}

fn record_status(result: &reqwest::Result<reqwest::Response>) {
    if let Ok(response) = result {
        // Outside an `observe` scope (a raw client used directly) there is nothing to record.
        let _ = OBSERVED_STATUS.try_with(|status| status.set(Some(response.status())));
    }
}

/// Routes a generated client's hooks to its [`Seam`].
macro_rules! hooks_through_seam {
    ($client:ty) => {
        impl progenitor_client::ClientHooks<Seam> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                use progenitor_client::ClientInfo as _;
                self.inner().prepare(request);
                Ok(())
            }

            async fn post<E>(
                &self,
                result: &reqwest::Result<reqwest::Response>,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                record_status(result);
                Ok(())
            }
        }
    };
}

hooks_through_seam!(crate::fastly::raw::Client);
hooks_through_seam!(crate::cloudflare::raw::Client);

/// How a provider's error body becomes an [`ApiError`].
pub(crate) trait ErrorBody {
    /// The typed body progenitor decoded.
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>);
    /// A body progenitor did not decode (an unlisted status), if it has the provider's shape.
    fn decode(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)>;
}

impl ErrorBody for () {
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>) {
        (Vec::new(), Vec::new())
    }
    fn decode(_: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        None
    }
}

/// Runs one generated call and turns progenitor's error into the crate's: the one place where
/// that happens for both providers.
pub(crate) async fn call<T, E: ErrorBody>(
    provider: Provider,
    call: impl Future<Output = Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<E>>>,
) -> Result<progenitor_client::ResponseValue<T>, Error> {
    let (result, status) = observe(call).await;
    match result {
        Ok(value) => Ok(value),
        Err(error) => Err(convert(provider, error, status).await),
    }
}

async fn convert<E: ErrorBody>(
    provider: Provider,
    error: progenitor_client::Error<E>,
    status: Option<StatusCode>,
) -> Error {
    use progenitor_client::Error as P;
    match error {
        P::ErrorResponse(response) => {
            let status = response.status();
            let (errors, messages) = response.into_inner().into_messages();
            Error::Api(ApiError {
                provider,
                status,
                errors,
                messages,
                excerpt: None,
            })
        }
        P::UnexpectedResponse(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(body) => from_undecoded_body::<E>(provider, status, &body, None),
                Err(e) => Error::transport(provider, "reading the response body failed", e),
            }
        }
        P::InvalidResponsePayload(body, e) => match status {
            Some(status) => from_undecoded_body::<E>(provider, status, &body, Some(Box::new(e))),
            None => Error::BadResponse(crate::error::BadResponse {
                provider,
                status: None,
                reason: format!("the body is not the expected JSON: {e}"),
                excerpt: excerpt(&body),
                source: Some(Box::new(e)),
            }),
        },
        P::CommunicationError(e) | P::InvalidUpgrade(e) => {
            Error::transport(provider, "the request could not be sent or answered", e)
        }
        P::ResponseBodyError(e) => {
            Error::transport(provider, "reading the response body failed", e)
        }
        P::InvalidRequest(reason) => Error::InvalidInput(InvalidInput::Unbuildable { reason }),
        P::Custom(reason) => Error::transport(provider, "a request hook failed", reason),
    }
}

/// An answer whose body progenitor did not decode: an API error if the status says so (with
/// the provider's codes if the body has its shape, else an excerpt), a bad response otherwise.
pub(crate) fn from_undecoded_body<E: ErrorBody>(
    provider: Provider,
    status: StatusCode,
    body: &[u8],
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    if status.is_client_error() || status.is_server_error() {
        let (errors, messages, excerpt) = match E::decode(body) {
            Some((errors, messages)) => (errors, messages, None),
            None => (Vec::new(), Vec::new(), excerpt(body)),
        };
        return Error::Api(ApiError {
            provider,
            status,
            errors,
            messages,
            excerpt,
        });
    }
    Error::BadResponse(crate::error::BadResponse {
        provider,
        status: Some(status),
        reason: match &source {
            Some(e) => format!("the body is not the expected JSON: {e}"),
            None => "a status the API does not document for this call".to_string(),
        },
        excerpt: excerpt(body),
        source,
    })
}

/// Sends a hand-written request (one progenitor cannot express) through the same hooks as the
/// generated calls: credential, status recording and, later, the request policy.
pub(crate) async fn send<C>(
    client: &C,
    provider: Provider,
    operation_id: &'static str,
    mut request: reqwest::Request,
) -> Result<reqwest::Response, Error>
where
    C: progenitor_client::ClientHooks<Seam> + progenitor_client::ClientInfo<Seam>,
{
    let info = progenitor_client::OperationInfo { operation_id };
    let hooks = async {
        client.pre::<()>(&mut request, &info).await?;
        let result = client.exec(request, &info).await;
        client.post::<()>(&result, &info).await?;
        Ok::<_, progenitor_client::Error<()>>(result?)
    };
    hooks.await.map_err(|e| match e {
        progenitor_client::Error::CommunicationError(e) => {
            Error::transport(provider, "the request could not be sent or answered", e)
        }
        other => Error::transport(provider, "a request hook failed", other.to_string()),
    })
}

/// Reads a hand-written call's answer: the JSON `T` of a 2xx status, else the error it carries.
pub(crate) async fn decode_json<T: serde::de::DeserializeOwned, E: ErrorBody>(
    provider: Provider,
    response: reqwest::Response,
) -> Result<(StatusCode, T), Error> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::transport(provider, "reading the response body failed", e))?;
    if !status.is_success() {
        return Err(from_undecoded_body::<E>(provider, status, &body, None));
    }
    match serde_json::from_slice(&body) {
        Ok(value) => Ok((status, value)),
        Err(e) => Err(from_undecoded_body::<E>(
            provider,
            status,
            &body,
            Some(Box::new(e)),
        )),
    }
}
