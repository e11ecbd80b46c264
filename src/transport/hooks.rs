//! What runs around every request of a generated client (progenitor's `ClientHooks`), and the
//! answer's status and headers kept for the attempt loop.

use std::cell::RefCell;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::transport::segment;

tokio::task_local! {
    /// The status and headers of the answer to the current attempt.
    pub(crate) static OBSERVED: RefCell<Option<(StatusCode, HeaderMap)>>;
}

/// Runs one attempt, keeping the status and headers it was answered with: progenitor drops them
/// when a body does not decode, and retries need `Retry-After`.
pub(crate) async fn observe<T>(
    attempt: impl Future<Output = T>,
) -> (T, Option<(StatusCode, HeaderMap)>) {
    OBSERVED
        .scope(RefCell::new(None), async move {
            let out = attempt.await;
            (out, OBSERVED.with(|o| o.borrow_mut().take()))
        })
        .await
}

/// The answer headers the attempt loop reads: waits, rate limits, request ids.
const KEPT_HEADERS: [&str; 12] = [
    "retry-after",
    "retry-after-ms",
    "ratelimit",
    "ratelimit-policy",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "fastly-ratelimit-remaining",
    "fastly-ratelimit-reset",
    "cf-ray",
    "x-request-id",
    "fastly-request-id",
];

pub(crate) fn record_answer(result: &reqwest::Result<reqwest::Response>) {
    if let Ok(response) = result {
        // Only the headers the loop reads, found in one pass over the answer's few headers:
        // cloning the whole map, or a lookup per name, costs every call more than the rest of
        // the transport.
        let mut kept = HeaderMap::new();
        for (name, value) in response.headers() {
            if KEPT_HEADERS.contains(&name.as_str()) {
                kept.append(name.clone(), value.clone());
            }
        }
        // Outside an attempt (a raw client used directly) there is nothing to record.
        let _ = OBSERVED.try_with(|o| *o.borrow_mut() = Some((response.status(), kept)));
    }
}

/// Routes a generated client's hooks to its [`Transport`]: `pre` checks that the request's path is
/// its operation's template and adds the credential, `exec` puts the operation's read limit on
/// the answer, `post` records the answer's status and headers. Invoked by each provider's
/// `raw.rs` with its operation table and what each operation answers.
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

            async fn post<E>(
                &self,
                result: &reqwest::Result<reqwest::Response>,
                _info: &progenitor_client::OperationInfo,
            ) -> Result<(), progenitor_client::Error<E>> {
                $crate::transport::hooks::record_answer(result);
                Ok(())
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
