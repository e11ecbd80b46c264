//! The v4 response envelope, unwrapped in one place.
//!
//! Every JSON answer is `{success, errors, messages, result}`. A call succeeds only when the
//! status is 2xx *and* `success` is true; otherwise it is an [`ApiError`] with every
//! `{code, message}` pair. `messages` on success come back with the result in a [`Reply`].

use std::ops::Deref;

use reqwest::StatusCode;

use super::raw::types;
use crate::error::{ApiError, ApiMessage, Error, Provider};
use crate::transport::{self, Call, ErrorBody};

/// A successful answer's result, with the informational messages that came with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply<T> {
    value: T,
    messages: Vec<ApiMessage>,
}

impl<T> Reply<T> {
    /// The result.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The service's informational `messages` (usually none).
    pub fn messages(&self) -> &[ApiMessage] {
        &self.messages
    }

    pub(crate) fn new(value: T, messages: Vec<ApiMessage>) -> Self {
        Reply { value, messages }
    }

    pub(crate) fn into_parts(self) -> (T, Vec<ApiMessage>) {
        (self.value, self.messages)
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        Reply {
            value: f(self.value),
            messages: self.messages,
        }
    }
}

impl<T> Deref for Reply<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A generated envelope type.
pub(crate) trait Envelope {
    type Result;
    fn into_parts(self) -> (bool, Vec<types::Message>, Vec<types::Message>, Self::Result);
}

macro_rules! envelope {
    ($($ty:ident => $result:ty),* $(,)?) => {$(
        impl Envelope for types::$ty {
            type Result = $result;
            fn into_parts(self) -> (bool, Vec<types::Message>, Vec<types::Message>, $result) {
                (self.success, self.errors, self.messages, self.result)
            }
        }
    )*};
}

envelope! {
    NamespaceListResponse => Vec<types::Namespace>,
    NamespaceResponse => Option<types::Namespace>,
    KeyListResponse => Vec<types::Key>,
    MetadataResponse => Option<serde_json::Value>,
    BulkResultResponse => Option<types::BulkResult>,
    BulkGetResponse => Option<types::BulkGetResult>,
    EmptyResponse => Option<serde_json::Value>,
}

fn messages(list: Vec<types::Message>) -> Vec<ApiMessage> {
    list.into_iter()
        .map(|m| ApiMessage {
            code: m.code,
            message: m.message,
        })
        .collect()
}

/// The result of a 2xx answer, or the error its envelope reports (without the credential,
/// should the server echo it).
pub(crate) fn unwrap<E: Envelope>(
    transport: &transport::Transport,
    status: StatusCode,
    envelope: E,
) -> Result<Reply<E::Result>, Error> {
    let (success, errors, info, result) = envelope.into_parts();
    if !success {
        let error = ApiError::new(
            Provider::Cloudflare,
            status,
            messages(errors),
            messages(info),
            None,
        );
        return Err(transport.redact_credential(Error::Api(error)));
    }
    Ok(Reply {
        value: result,
        messages: messages(info),
    })
}

/// Runs a generated JSON call (see [`transport::call`]) and unwraps its envelope.
pub(crate) async fn call<E, F, Fut>(
    raw: &super::raw::Client,
    call: Call<'_>,
    make: F,
) -> Result<Reply<E::Result>, Error>
where
    E: Envelope,
    F: FnMut() -> Option<Fut>,
    Fut: Future<
        Output = Result<
            progenitor_client::ResponseValue<E>,
            progenitor_client::Error<types::Failure>,
        >,
    >,
{
    use progenitor_client::ClientInfo as _;
    let response = transport::call(raw.inner(), call, make).await?;
    let status = response.status();
    unwrap(raw.inner(), status, response.into_inner())
}

impl ErrorBody for types::Failure {
    fn into_messages(self) -> (Vec<ApiMessage>, Vec<ApiMessage>) {
        (messages(self.errors), messages(self.messages))
    }

    fn decode(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        serde_json::from_slice::<types::Failure>(body)
            .ok()
            .map(ErrorBody::into_messages)
    }

    fn unsuccessful(body: &[u8]) -> Option<(Vec<ApiMessage>, Vec<ApiMessage>)> {
        serde_json::from_slice::<types::Failure>(body)
            .ok()
            .filter(|failure| !failure.success)
            .map(ErrorBody::into_messages)
    }
}
