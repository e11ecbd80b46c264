//! What runs around every request of a generated client (progenitor's `ClientHooks`), and the
//! answer headers the attempt loop reads.

use reqwest::header::HeaderMap;

use crate::transport::segment;

/// The answer headers the attempt loop reads (waits, rate limits, what identifies the answer),
/// found in one
/// pass over the answer's few headers: cloning the whole map, or a lookup per name, costs every
/// call more than the rest of the transport.
///
/// `None` when there are none (most answers): what the loop passes around stays small.
pub(crate) fn kept_headers(headers: &HeaderMap) -> Option<Box<HeaderMap>> {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        if matches!(
            name.as_str(),
            "retry-after"
                | "retry-after-ms"
                | "ratelimit"
                | "ratelimit-policy"
                | "x-ratelimit-limit"
                | "x-ratelimit-remaining"
                | "x-ratelimit-reset"
                | "fastly-ratelimit-remaining"
                | "fastly-ratelimit-reset"
                | "cf-ray"
                | "x-request-id"
                | "fastly-request-id"
                | "x-served-by"
                | "x-timer"
        ) {
            kept.append(name.clone(), value.clone());
        }
    }
    (!kept.is_empty()).then(|| Box::new(kept))
}

/// What identifies one answer to the provider's support, from its kept headers: Cloudflare's
/// `CF-Ray` (documented: "Cloudflare Ray ID", which support asks for); a request-id header where
/// an answer has one; else Fastly's `X-Served-By` (the cache nodes) and `X-Timer` (when the
/// request started, to the microsecond) together, since Fastly's API answers carry no request-id
/// header (none of go-fastly's 50 recorded answers does) but always these two.
pub(crate) fn request_id(kept: &HeaderMap) -> Option<String> {
    let text = |name: &str| kept.get(name).and_then(|v| v.to_str().ok());
    if let Some(id) = text("cf-ray")
        .or_else(|| text("x-request-id"))
        .or_else(|| text("fastly-request-id"))
    {
        return Some(id.to_string());
    }
    match (text("x-served-by"), text("x-timer")) {
        (Some(node), Some(timer)) => Some(format!("{node} {timer}")),
        _ => None,
    }
}

/// Routes a generated client's hooks to its [`Transport`]: `pre` checks that the request's path is
/// its operation's template and adds the credential, `exec` puts the operation's read limit on
/// the answer. Nothing is recorded on the side: every answer reaches the attempt loop inside
/// progenitor's value or error, with its status and headers (`generated.rs` keeps them even for
/// a body that does not decode). Invoked by each provider's `raw.rs` with its operation table
/// and what each operation answers.
macro_rules! hooks_through_transport {
    ($client:ty, $operations:expr, $answer:path) => {
        impl progenitor_client::ClientHooks<$crate::transport::Transport> for $client {
            async fn pre<E>(
                &self,
                request: &mut reqwest::Request,
                info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                use progenitor_client::ClientInfo as _;
                $crate::transport::hooks::check_request(request, self.baseurl(), $operations, info)
                    .map_err(|reason| {
                        progenitor_client::Error::InvalidRequest(reason.to_string())
                    })?;
                self.inner().prepare(request);
                Ok(())
            }

            async fn exec(
                &self,
                request: reqwest::Request,
                info: &progenitor_client::OperationInfo,
            ) -> reqwest::Result<reqwest::Response> {
                use progenitor_client::ClientInfo as _;
                let response = self.client().execute(request).await?;
                let limits = &self.inner().policy().read_limits;
                let answer = $answer(info.operation_id);
                Ok($crate::transport::capped::limit(response, answer, limits))
            }
        }
    };
}
pub(crate) use hooks_through_transport;

/// Refuses a request whose parsed path is not its operation's template with one segment per
/// parameter (see [`crate::transport::segment::check_path`]); nothing is sent.
pub(crate) fn check_request(
    request: &reqwest::Request,
    base_url: &str,
    operations: &[(&str, &str, &str)],
    info: &progenitor_client::OperationInfo,
) -> Result<(), &'static str> {
    let template = operations
        .iter()
        .find(|(id, ..)| *id == info.operation_id)
        .map(|(_, _, path)| *path)
        .ok_or("an operation outside the spec")?;
    let url = request.url();
    if url.fragment().is_some() {
        return Err(segment::REFUSED);
    }
    segment::check_path(url.path(), base_url, template)
}
