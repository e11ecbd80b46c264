//! Bounded reads: every answer the crate buffers is read under a limit from
//! [`ReadLimits`], chosen by what the operation answers, so no answer, however large or endless,
//! can exhaust memory.
//!
//! The limit is put on the body as it arrives, in the generated clients' `exec` hook, before
//! progenitor or a facade reads it: a JSON answer past its limit fails with [`AnswerTooLarge`]
//! (a `BadResponse` naming the limit, never an abort); an error answer is cut after its start,
//! which is all an error message keeps, and the rest is never read (the connection is dropped).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

use crate::policy::ReadLimits;

/// What an operation answers, which decides how much of it may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A value, streamed to the caller: not limited here.
    Value,
    /// A single JSON document ([`ReadLimits::json`]).
    Json,
    /// A listing page ([`ReadLimits::page`]).
    Page,
    /// A bulk write or delete, or batch, answer, whatever its status ([`ReadLimits::bulk`]).
    Bulk,
    /// A bulk get answer, whatever its status ([`ReadLimits::bulk_get`]).
    BulkGet,
}

/// The answer went past the read limit for it.
#[derive(Debug)]
pub(crate) struct AnswerTooLarge {
    pub(crate) limit: usize,
    /// The [`ReadLimits`] field that set it.
    pub(crate) setting: &'static str,
}

impl fmt::Display for AnswerTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the answer is larger than its read limit of {} bytes (`ReadLimits::{}`)",
            self.limit, self.setting
        )
    }
}

impl std::error::Error for AnswerTooLarge {}

/// A value's body had neither a length nor chunked framing, so a connection cut early could
/// not be told from its end.
#[derive(Debug)]
pub(crate) struct Unframed;

impl fmt::Display for Unframed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the value ended with the connection, without Content-Length or chunked framing, \
             so it may be cut short",
        )
    }
}

impl std::error::Error for Unframed {}

/// Finds `T` in an error's source chain.
pub(crate) fn find<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The limit to read `response` under, by what its operation answers and its status.
fn mode(response: &reqwest::Response, answer: Answer, limits: &ReadLimits) -> Option<Mode> {
    let success = response.status().is_success();
    match answer {
        // Per-line errors can come with any status: never cut to an excerpt.
        Answer::Bulk => Some(Mode::Fail(limits.bulk, "bulk")),
        Answer::BulkGet => Some(Mode::Fail(limits.bulk_get, "bulk_get")),
        _ if !success => Some(Mode::Cut(limits.error_body)),
        Answer::Value => unframed(response).then_some(Mode::FailAtEnd),
        Answer::Json => Some(Mode::Fail(limits.json, "json")),
        Answer::Page => Some(Mode::Fail(limits.page, "page")),
    }
}

/// An HTTP/1 body delimited only by the connection's close.
fn unframed(response: &reqwest::Response) -> bool {
    // A declared length makes the body's size exact: no header lookup on the common answer.
    response.version() <= reqwest::Version::HTTP_11
        && response.content_length().is_none()
        && !response.headers().contains_key(CONTENT_LENGTH)
        && !response
            .headers()
            .get_all(TRANSFER_ENCODING)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
            })
}

/// `response` with its body read under the limit for `answer`.
pub(crate) fn limit(
    response: reqwest::Response,
    answer: Answer,
    limits: &ReadLimits,
) -> reqwest::Response {
    let Some(mode) = mode(&response, answer, limits) else {
        return response;
    };
    // A declared length within the limit is enforced by the HTTP layer already.
    let declared = response.content_length();
    if let (Mode::Fail(max, _) | Mode::Cut(max), Some(len)) = (mode, declared)
        && usize::try_from(len).is_ok_and(|len| len <= max)
    {
        return response;
    }
    let response: http::Response<reqwest::Body> = response.into();
    let (mut parts, body) = response.into_parts();
    if let Mode::Cut(_) = mode {
        // The body the caller sees is no longer the declared one.
        parts.headers.remove(CONTENT_LENGTH);
    }
    let capped = Capped {
        inner: body,
        mode,
        read: 0,
        done: false,
    };
    reqwest::Response::from(http::Response::from_parts(
        parts,
        reqwest::Body::wrap(capped),
    ))
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Fail past this many bytes, naming the setting.
    Fail(usize, &'static str),
    /// End the body after this many bytes.
    Cut(usize),
    /// Fail at the end: the body cannot tell a cut from its end.
    FailAtEnd,
}

struct Capped {
    inner: reqwest::Body,
    mode: Mode,
    read: usize,
    done: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(match self.mode {
                    Mode::FailAtEnd => Some(Err(Box::new(Unframed))),
                    _ => None,
                });
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                return Poll::Ready(Some(Err(Box::new(e))));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        let len = data.len();
        let total = self.read.saturating_add(len);
        match self.mode {
            Mode::Fail(limit, setting) if total > limit => {
                self.done = true;
                Poll::Ready(Some(Err(Box::new(AnswerTooLarge { limit, setting }))))
            }
            Mode::Cut(max) if total >= max => {
                self.done = true;
                let keep = max - self.read;
                let data = frame.into_data().unwrap_or_default().slice(..keep.min(len));
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            _ => {
                self.read = total;
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &'static [u8], chunked: bool) -> reqwest::Response {
        let mut builder = http::Response::builder().status(status);
        if chunked {
            builder = builder.header(TRANSFER_ENCODING, "chunked");
        }
        let chunks = body
            .chunks(3)
            .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c)));
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks.collect::<Vec<_>>()));
        reqwest::Response::from(builder.body(body).unwrap())
    }

    fn limits(max: usize) -> ReadLimits {
        ReadLimits {
            error_body: max,
            json: max,
            page: max,
            bulk: max,
            bulk_get: max,
            value_bytes: None,
        }
    }

    #[tokio::test]
    async fn json_past_its_limit_fails_naming_it() {
        let answer = limit(response(200, b"0123456789", true), Answer::Json, &limits(8));
        let error = answer.bytes().await.unwrap_err();
        let found = find::<AnswerTooLarge>(&error).expect("the limit is in the chain");
        assert_eq!((found.limit, found.setting), (8, "json"));
        let answer = limit(response(200, b"01234567", true), Answer::Json, &limits(8));
        assert_eq!(&answer.bytes().await.unwrap()[..], b"01234567");
    }

    #[tokio::test]
    async fn an_error_body_is_cut_after_its_start() {
        let answer = limit(response(500, b"0123456789", true), Answer::Json, &limits(4));
        assert_eq!(&answer.bytes().await.unwrap()[..], b"0123");
        let answer = limit(response(500, b"0123456789", true), Answer::Bulk, &limits(4));
        assert!(
            answer.bytes().await.is_err(),
            "bulk answers are never cut to an excerpt"
        );
    }

    #[tokio::test]
    async fn a_value_without_framing_fails_at_its_end() {
        let answer = limit(response(200, b"abc", false), Answer::Value, &limits(1));
        let error = answer.bytes().await.unwrap_err();
        assert!(find::<Unframed>(&error).is_some());
        let answer = limit(response(200, b"abcdef", true), Answer::Value, &limits(1));
        assert_eq!(&answer.bytes().await.unwrap()[..], b"abcdef");
    }
}
