//! Values going up and coming down, streamed with bounded memory.
//!
//! - Up: a [`Body`] from bytes or a string (sent as is, and replayable), or from a stream or an
//!   [`AsyncRead`](tokio::io::AsyncRead) (sent chunked as it is read; one-shot: a request with a
//!   streamed body is never retried). Give the length when you know it, so the provider's size
//!   limit is checked before sending.
//! - Down: a [`ValueStream`] of [`Bytes`] chunks; [`ValueStream::bytes`] collects it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};

use crate::error::{Error, InvalidInput, Provider};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A value to upload.
pub struct Body {
    pub(crate) repr: Repr,
}

pub(crate) enum Repr {
    Bytes(Bytes),
    Stream {
        body: reqwest::Body,
        len: Option<u64>,
    },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: values are the caller's data.
        f.debug_struct("Body")
            .field("len", &self.len())
            .field("streamed", &self.is_streamed())
            .finish()
    }
}

impl Body {
    /// A body read from a stream of chunks as it is sent (chunked transfer encoding). `len`, when
    /// given, is checked against the provider's limit before anything is sent.
    pub fn from_stream<S, B, E>(stream: S, len: Option<u64>) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let chunks = stream
            .map_ok(Into::<Bytes>::into)
            .map_err(Into::<BoxError>::into);
        Body {
            repr: Repr::Stream {
                body: reqwest::Body::wrap_stream(chunks),
                len,
            },
        }
    }

    /// A body read from `reader` as it is sent (a file, a socket, a decompressor).
    pub fn from_reader<R>(reader: R, len: Option<u64>) -> Self
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        Body::from_stream(tokio_util::io::ReaderStream::new(reader), len)
    }

    /// The length in bytes, when known.
    pub fn len(&self) -> Option<u64> {
        match &self.repr {
            Repr::Bytes(bytes) => Some(bytes.len() as u64),
            Repr::Stream { len, .. } => *len,
        }
    }

    /// Whether the length is known to be zero.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Whether the body is read from a stream (and so cannot be sent twice).
    pub fn is_streamed(&self) -> bool {
        matches!(self.repr, Repr::Stream { .. })
    }

    /// The body for each attempt of a request: bytes as often as asked, a stream once.
    pub(crate) fn into_source(self) -> BodySource {
        BodySource(Some(self.repr))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body {
            repr: Repr::Bytes(bytes),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

/// Hands out a request body per attempt; see [`Body::into_source`].
pub(crate) struct BodySource(Option<Repr>);

impl BodySource {
    /// The body for the next attempt, `None` once a streamed body has been handed out.
    pub(crate) fn next(&mut self) -> Option<Repr> {
        match self.0.take()? {
            Repr::Bytes(bytes) => {
                self.0 = Some(Repr::Bytes(bytes.clone()));
                Some(Repr::Bytes(bytes))
            }
            stream => Some(stream),
        }
    }
}

impl Repr {
    pub(crate) fn into_reqwest(self) -> reqwest::Body {
        match self {
            Repr::Bytes(bytes) => bytes.into(),
            Repr::Stream { body, .. } => body,
        }
    }
}

/// A value being downloaded: a stream of chunks. A connection cut before the end is an error,
/// never a short value.
pub struct ValueStream {
    provider: Provider,
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>,
}

impl std::fmt::Debug for ValueStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueStream")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ValueStream {
    pub(crate) fn new(provider: Provider, stream: progenitor_client::ByteStream) -> Self {
        ValueStream {
            provider,
            chunks: stream.into_inner(),
        }
    }

    /// Reads the whole value into memory.
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        // Most values arrive in one chunk, which is returned as it is, without a copy.
        let Some(first) = self.next().await.transpose()? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.next().await.transpose()? else {
            return Ok(first);
        };
        let mut whole = bytes::BytesMut::from(&first[..]);
        whole.extend_from_slice(&second);
        while let Some(chunk) = self.next().await {
            whole.extend_from_slice(&chunk?);
        }
        Ok(whole.freeze())
    }
}

impl Stream for ValueStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let provider = self.provider;
        self.chunks.as_mut().poll_next(cx).map(|chunk| {
            chunk.map(|r| r.map_err(|e| Error::transport(provider, "reading the value failed", e)))
        })
    }
}

/// Refuses a value whose known length is over the provider's `max`.
pub(crate) fn check_len(len: Option<u64>, max: u64) -> Result<(), InvalidInput> {
    match len {
        Some(len) if len > max => Err(InvalidInput::ValueTooLarge { len, max }),
        _ => Ok(()),
    }
}
