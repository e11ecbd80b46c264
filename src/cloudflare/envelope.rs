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

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    use super::{Envelope, Reply, types, unwrap};
    use crate::error::{ApiError, ApiMessage, Error, Provider};
    use crate::transport::{ErrorBody, Transport};

    /// Shaped as every error body (kv-error-codes.yaml, header); the codes are from there too
    /// (7003 is the official OpenAPI's example, 10000 cloudflare-go's authentication error). Two
    /// errors and a message so order and `messages` are seen. No `result`: a list envelope
    /// cannot decode a null one (that case is `unsuccessful`'s, tested below).
    const FAILURE: &str = r#"{"success": false,
        "errors": [{"code": 7003, "message": "No route for the URI"},
                   {"code": 10000, "message": "Authentication error"}],
        "messages": [{"code": 1, "message": "see the docs"}]}"#;

    fn msg(code: i64, message: &str) -> ApiMessage {
        ApiMessage {
            code,
            message: message.to_string(),
        }
    }

    fn ok<E: Envelope + DeserializeOwned>(body: &str) -> Reply<E::Result> {
        let envelope: E = serde_json::from_str(body).unwrap();
        unwrap(&Transport::anonymous(), StatusCode::OK, envelope).unwrap()
    }

    /// Unwraps `FAILURE` as `E`, answered with a 2xx status so only `success` can fail it.
    fn failed<E: Envelope + DeserializeOwned>() -> ApiError {
        let envelope: E = serde_json::from_str(FAILURE).unwrap();
        match unwrap(&Transport::anonymous(), StatusCode::ACCEPTED, envelope) {
            Err(Error::Api(e)) => e,
            Err(other) => panic!("expected an API error, got {other:?}"),
            Ok(_) => panic!("an unsuccessful envelope unwrapped"),
        }
    }

    #[test]
    fn a_successful_envelope_gives_its_result_and_messages() {
        // tests/fixtures/cloudflare-go-v0-test-bodies.yaml, TestWorkersKV_ListWorkersKVNamespaces
        // (result_info left out: unwrap ignores it), with a message added: the fixtures have none.
        let list = ok::<types::NamespaceListResponse>(
            r#"{"result": [{"id": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "title": "test_namespace_1"},
                          {"id": "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", "title": "test_namespace_2"}],
                "success": true, "errors": [], "messages": [{"code": 2, "message": "note"}]}"#,
        );
        assert_eq!(list.messages(), [msg(2, "note")]);
        let titles: Vec<&str> = list.iter().map(|n| n.title.as_str()).collect();
        assert_eq!(titles, ["test_namespace_1", "test_namespace_2"]);

        // Same file, TestWorkersKV_CreateWorkersKVNamespace.
        let created = ok::<types::NamespaceResponse>(
            r#"{"result": {"id": "3aeaxxxxee014exxxx4cf66xxxxc0448", "title": "test_namespace"},
                "success": true, "errors": [], "messages": []}"#,
        );
        assert!(created.messages().is_empty());
        let created = created.into_inner().unwrap();
        assert_eq!(
            (created.id.as_str(), created.title.as_str()),
            ("3aeaxxxxee014exxxx4cf66xxxxc0448", "test_namespace")
        );

        // Same file, TestWorkersKV_ListKeysWithParameters (result_info left out).
        let keys = ok::<types::KeyListResponse>(
            r#"{"result": [{"name": "test_key_1", "metadata": "test_key_1_meta"},
                          {"name": "test_key_2", "metadata": {"test2_meta_key": "test2_meta_value"}}],
                "success": true, "errors": [], "messages": []}"#,
        );
        let keys: Vec<_> = keys
            .iter()
            .map(|k| (&*k.name, k.metadata.clone()))
            .collect();
        assert_eq!(
            keys,
            [
                ("test_key_1", Some(json!("test_key_1_meta"))),
                (
                    "test_key_2",
                    Some(json!({"test2_meta_key": "test2_meta_value"}))
                ),
            ]
        );

        // The remaining bodies are written from the spec (specs/cloudflare-kv.yaml): no fixture.
        let metadata = ok::<types::MetadataResponse>(
            r#"{"result": {"k": "v"}, "success": true, "errors": [], "messages": []}"#,
        );
        assert_eq!(metadata.into_inner(), Some(json!({"k": "v"})));

        let bulk = ok::<types::BulkResultResponse>(
            r#"{"result": {"successful_key_count": 1, "unsuccessful_keys": ["b"]},
                "success": true, "errors": [], "messages": []}"#,
        );
        let bulk = bulk.into_inner().unwrap();
        assert_eq!(bulk.successful_key_count, Some(1));
        assert_eq!(bulk.unsuccessful_keys, ["b"]);

        let got = ok::<types::BulkGetResponse>(
            r#"{"result": {"values": {"a": "1", "b": null}},
                "success": true, "errors": [], "messages": []}"#,
        );
        match got.into_inner() {
            Some(types::BulkGetResult::Values(v)) => {
                assert_eq!(json!(v.values), json!({"a": "1", "b": null}));
            }
            other => panic!("expected plain values, got {other:?}"),
        }

        // tests/fixtures/cloudflare-go-v0-test-bodies.yaml, TestWorkersKV_DeleteWorkersKVNamespace.
        let deleted =
            ok::<types::EmptyResponse>(r#"{"success": true, "errors": [], "messages": []}"#);
        assert_eq!(deleted, Reply::new(None, Vec::new()));
    }

    #[test]
    fn an_unsuccessful_envelope_is_an_api_error_with_every_message() {
        let expected = ApiError::new(
            Provider::Cloudflare,
            StatusCode::ACCEPTED,
            vec![
                msg(7003, "No route for the URI"),
                msg(10000, "Authentication error"),
            ],
            vec![msg(1, "see the docs")],
            None,
        );
        // Every envelope type reports the same error, in the listed order, with its status.
        assert_eq!(failed::<types::NamespaceListResponse>(), expected);
        assert_eq!(failed::<types::NamespaceResponse>(), expected);
        assert_eq!(failed::<types::KeyListResponse>(), expected);
        assert_eq!(failed::<types::MetadataResponse>(), expected);
        assert_eq!(failed::<types::BulkResultResponse>(), expected);
        assert_eq!(failed::<types::BulkGetResponse>(), expected);
        assert_eq!(failed::<types::EmptyResponse>(), expected);
    }

    #[test]
    fn a_failure_body_decodes_to_its_errors_and_messages() {
        // /work/shared/conformance/cloudflare/workers-kv.openapi.yaml,
        // workers-kv_api-response-common-failure, its example.
        let body = br#"{"errors": [{"code": 7003, "message": "No route for the URI"}],
                        "messages": [], "result": null, "success": false}"#;
        let expected = Some((vec![msg(7003, "No route for the URI")], Vec::new()));
        assert_eq!(types::Failure::decode(body), expected);
        assert_eq!(types::Failure::unsuccessful(body), expected);
        // A proxy's page is not the provider's shape.
        assert_eq!(
            types::Failure::decode(b"<html>502 Bad Gateway</html>"),
            None
        );
        assert_eq!(types::Failure::unsuccessful(b"<html>502</html>"), None);
    }

    #[test]
    fn only_a_body_saying_success_false_is_unsuccessful() {
        // tests/fixtures/cloudflare-go-v0-test-bodies.yaml, TestWorkersKV_UpdateWorkersKVNamespace.
        let success = br#"{"result": null, "success": true, "errors": [], "messages": []}"#;
        assert_eq!(types::Failure::unsuccessful(success), None);
        let failure = br#"{"result": null, "success": false, "errors": [], "messages": []}"#;
        assert_eq!(
            types::Failure::unsuccessful(failure),
            Some((Vec::new(), Vec::new()))
        );
    }
}
