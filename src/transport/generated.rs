//! What the generated clients call instead of progenitor's own helpers (`codegen.rs` transform
//! T4), to spare every call work it does not need: an absent optional query parameter adds
//! nothing to the URL (progenitor re-serialises the query for each one), the URL is joined from
//! its parts without `format!`, and an answer's headers are moved into its `ResponseValue`, not
//! cloned. A body that does not decode keeps its answer's status and headers.

use std::sync::Arc;

use progenitor_client::{ByteStream, Error, QueryParam, ResponseValue};
use serde::Serialize;

/// `RequestBuilder::query` for an optional parameter: nothing at all when it is `None`.
pub(crate) trait OptionalQuery {
    fn optional_query<T: Serialize>(self, name: &str, value: &Option<T>) -> Self;
}

impl OptionalQuery for reqwest::RequestBuilder {
    fn optional_query<T: Serialize>(self, name: &str, value: &Option<T>) -> Self {
        match value {
            // The same serialisation as progenitor's, for the value alone.
            Some(value) => self.query(&QueryParam::new(name, value)),
            None => self,
        }
    }
}

/// A request's URL from its parts, as the generated `format!` would build it, without the
/// formatting machinery (every call builds one).
pub(crate) fn url(parts: &[&str]) -> String {
    let mut url = String::with_capacity(parts.iter().map(|part| part.len()).sum());
    for part in parts {
        url.push_str(part);
    }
    url
}

/// `ResponseValue::from_response`, moving the headers. A body that cannot be read, or is not the
/// expected JSON, comes back as the answer it was (status, headers and what body there is, the
/// reason attached as a [`BodyProblem`]), where progenitor's `ResponseBodyError` and
/// `InvalidResponsePayload` would drop the status and headers: the attempt loop needs the status
/// and `Retry-After` of a 429 whose body a server then cuts or garbles.
pub(crate) async fn json<T: serde::de::DeserializeOwned, E>(
    mut response: reqwest::Response,
) -> Result<ResponseValue<T>, Error<E>> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let (body, problem) = match response.bytes().await {
        Err(e) => (bytes::Bytes::new(), BodyProblem::Unread(Arc::new(e))),
        Ok(full) => match serde_json::from_slice(&full) {
            Ok(inner) => return Ok(ResponseValue::new(inner, status, headers)),
            Err(e) => (full, BodyProblem::NotTheExpectedJson(Arc::new(e))),
        },
    };
    let mut answer = http::Response::new(reqwest::Body::from(body));
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    answer.extensions_mut().insert(problem);
    Err(Error::UnexpectedResponse(answer.into()))
}

/// What was wrong with the body of an answer [`json`] hands back undecoded.
#[derive(Clone, Debug)]
pub(crate) enum BodyProblem {
    /// Reading it failed (cut, stalled, over its limit); the answer carries no body.
    Unread(Arc<reqwest::Error>),
    /// It is not the JSON the spec describes.
    NotTheExpectedJson(Arc<serde_json::Error>),
}

/// `ResponseValue::stream`, moving the headers.
pub(crate) fn stream(mut response: reqwest::Response) -> ResponseValue<ByteStream> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let body = ByteStream::new(Box::pin(response.bytes_stream()));
    ResponseValue::new(body, status, headers)
}

/// `ResponseValue::empty`, moving the headers.
pub(crate) fn empty(mut response: reqwest::Response) -> ResponseValue<()> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    ResponseValue::new((), status, headers)
}
