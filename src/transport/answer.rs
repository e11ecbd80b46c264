//! Answers into the crate's error: progenitor's error, an undecoded body, a reqwest failure, a
//! request the pre-send check refused. The one place for both providers.

use std::sync::Arc;

use reqwest::StatusCode;

use crate::error::{ApiError, ApiMessage, Error, InvalidInput, Provider, excerpt};
use crate::transport::capped::{AnswerTooLarge, find};
use crate::transport::generated::BodyProblem;
use crate::transport::segment;

/// How a provider's error body becomes an [`ApiError`].
pub(crate) trait ErrorBody {
    /// The typed body progenitor decoded.
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>);
    /// A body progenitor did not decode (an unlisted status), if it has the provider's shape.
    fn decode(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)>;
    /// A 2xx body that did not decode as the success type but says the call failed (Cloudflare:
    /// `success: false` with `result: null`).
    fn unsuccessful(_body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        None
    }
}

impl ErrorBody for () {
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>) {
        (Vec::new(), Vec::new())
    }
    fn decode(_: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        None
    }
}

/// A request the pre-send check refused: one of its path parameters cannot be a segment.
pub(crate) fn invalid_request(reason: String) -> Error {
    if reason == segment::REFUSED {
        Error::InvalidInput(InvalidInput::UnaddressableId)
    } else {
        Error::InvalidInput(InvalidInput::Unbuildable { reason })
    }
}

pub(crate) fn from_reqwest(provider: Provider, error: reqwest::Error) -> Error {
    if let Some(too_large) = find::<AnswerTooLarge>(&error) {
        return Error::answer_too_large(provider, too_large.limit, too_large.setting);
    }
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "the request could not be sent or answered"
    };
    Error::transport(provider, what, error)
}

pub(crate) async fn convert<E: ErrorBody>(
    provider: Provider,
    error: progenitor_client::Error<E>,
) -> Error {
    use progenitor_client::Error as P;
    match error {
        P::ErrorResponse(response) => {
            let status = response.status();
            let (errors, messages) = response.into_inner().into_messages();
            Error::Api(ApiError::new(provider, status, errors, messages, None))
        }
        P::UnexpectedResponse(mut response) => {
            let status = response.status();
            // The extension was just taken out of the answer: each `Arc` has one owner.
            let source: Option<Box<dyn std::error::Error + Send + Sync>> =
                match response.extensions_mut().remove::<BodyProblem>() {
                    Some(BodyProblem::Unread(e)) => {
                        return match Arc::try_unwrap(e) {
                            Ok(e) => from_reqwest(provider, e),
                            // Never reached; a shared reqwest error's text would hold the URL.
                            Err(_) => Error::transport(provider, "the body could not be read", "?"),
                        };
                    }
                    Some(BodyProblem::NotTheExpectedJson(e)) => Some(match Arc::try_unwrap(e) {
                        Ok(e) => Box::new(e),
                        Err(e) => Box::new(e),
                    }),
                    None => None,
                };
            match response.bytes().await {
                Ok(body) => from_undecoded_body::<E>(provider, status, &body, source),
                Err(e) => from_reqwest(provider, e),
            }
        }
        // The generated code decodes through `generated::json`, which keeps the answer instead.
        P::InvalidResponsePayload(body, e) => Error::BadResponse(crate::error::BadResponse::new(
            provider,
            None,
            "the body is not the expected JSON".to_string(),
            excerpt(&body),
            Some(Box::new(e)),
        )),
        P::CommunicationError(e) | P::InvalidUpgrade(e) | P::ResponseBodyError(e) => {
            from_reqwest(provider, e)
        }
        P::InvalidRequest(reason) => invalid_request(reason),
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
        let error = match E::decode(body) {
            Some((errors, messages)) => ApiError::new(provider, status, errors, messages, None),
            None => ApiError::new(provider, status, Vec::new(), Vec::new(), excerpt(body)),
        };
        return Error::Api(error);
    }
    if let Some((errors, messages)) = E::unsuccessful(body) {
        return Error::Api(ApiError::new(provider, status, errors, messages, None));
    }
    let reason = match &source {
        Some(_) => "the body is not the expected JSON".to_string(),
        None => "a status the API does not document for this call".to_string(),
    };
    Error::BadResponse(crate::error::BadResponse::new(
        provider,
        Some(status),
        reason,
        excerpt(body),
        source,
    ))
}

/// Decodes a hand-written call's answer (see [`send`]) as JSON `T`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    provider: Provider,
    status: StatusCode,
    body: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| from_undecoded_body::<()>(provider, status, body, Some(Box::new(e))))
}
