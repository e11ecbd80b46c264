//! What the generated clients call instead of progenitor's own helpers (`codegen.rs` transform
//! T4), to spare every call work it does not need: an absent optional query parameter adds
//! nothing to the URL (progenitor re-serialises the query for each one), and an answer's headers
//! are moved into its `ResponseValue`, not cloned.

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

/// `ResponseValue::from_response`, moving the headers.
pub(crate) async fn json<T: serde::de::DeserializeOwned, E>(
    mut response: reqwest::Response,
) -> Result<ResponseValue<T>, Error<E>> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    let full = response.bytes().await.map_err(Error::ResponseBodyError)?;
    let inner =
        serde_json::from_slice(&full).map_err(|e| Error::InvalidResponsePayload(full, e))?;
    Ok(ResponseValue::new(inner, status, headers))
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
