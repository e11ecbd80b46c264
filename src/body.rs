//! Values going up and coming down, streamed with bounded memory.
//!
//! - Up: a [`Body`] from bytes or a string (sent as is, and replayable), or from a stream or an
//!   [`AsyncRead`](tokio::io::AsyncRead) (sent chunked as it is read; one-shot: a request with a
//!   streamed body is never retried). Give the length when you know it, so the provider's size
//!   limit is checked before sending.
//! - Down: a [`ValueStream`] of [`Bytes`] chunks; [`ValueStream::bytes`] collects it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

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
    /// given, is checked against the provider's limit before anything is sent, and against what
    /// the stream yields while it is sent: a stream longer or shorter than `len` fails the
    /// request, so a value is never stored cut or padded.
    pub fn from_stream<S, B, E>(stream: S, len: Option<u64>) -> Self
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: Into<Bytes> + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let chunks = stream
            .map_ok(Into::<Bytes>::into)
            .map_err(Into::<BoxError>::into);
        let body = match len {
            Some(len) => reqwest::Body::wrap_stream(ExactLength {
                chunks: Box::pin(chunks),
                declared: len,
                seen: 0,
            }),
            None => reqwest::Body::wrap_stream(chunks),
        };
        Body {
            repr: Repr::Stream { body, len },
        }
    }

    /// A body read from `reader` as it is sent (a file, a socket, a decompressor).
    pub fn from_reader<R>(reader: R, len: Option<u64>) -> Self
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        Body::from_stream(tokio_util::io::ReaderStream::new(reader), len)
    }

    /// A file, read as it is sent, its length taken from the file system (so the provider's
    /// size limit is checked before anything is sent).
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), Box<dyn std::error::Error>> {
    /// let body = edgekv::Body::from_path("report.pdf").await?;
    /// store.put("reports/2026-12", body, edgekv::fastly::PutOptions::new()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn from_path(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        Ok(Body::from_reader(file, Some(len)))
    }

    /// `value` as JSON (`serde_json`), sent as bytes.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Session<'a> { user: &'a str, visits: u32 }
    ///
    /// let body = edgekv::Body::json(&Session { user: "ada", visits: 3 })?;
    /// assert_eq!(body.len(), Some(25));
    /// # Ok::<(), edgekv::Error>(())
    /// ```
    pub fn json(value: &impl serde::Serialize) -> Result<Self, Error> {
        serde_json::to_vec(value).map(Body::from).map_err(|e| {
            Error::InvalidInput(InvalidInput::Unbuildable {
                reason: format!("the value is not JSON: {e}"),
            })
        })
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

    /// The bytes of a body that is not streamed (a cheap clone).
    pub(crate) fn as_bytes(&self) -> Option<Bytes> {
        match &self.repr {
            Repr::Bytes(bytes) => Some(bytes.clone()),
            Repr::Stream { .. } => None,
        }
    }

    /// The whole body in memory, refused past `max` bytes (as `ValueTooLarge`, the length read
    /// so far); a stream that fails is the caller's error ([`Error::Caller`]).
    pub(crate) async fn collect(self, max: u64) -> Result<Bytes, Error> {
        use http_body_util::BodyExt as _;
        let body = match self.repr {
            Repr::Bytes(bytes) => {
                check_len(Some(bytes.len() as u64), max)?;
                return Ok(bytes);
            }
            Repr::Stream { body, .. } => body,
        };
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                let len = max.saturating_add(1);
                Err(InvalidInput::ValueTooLarge { len, max }.into())
            }
            Err(error) => Err(Error::from_caller(error)),
        }
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

/// A borrowed string is copied (a request may be sent again, after the borrow ends).
///
/// ```
/// let name = String::from("Ada");
/// let greeting = format!("hello, {name}");
/// let body = edgekv::Body::from(greeting.as_str());
/// assert_eq!(body.len(), Some(10));
/// ```
impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Bytes::copy_from_slice(text.as_bytes()).into()
    }
}

/// Borrowed bytes are copied, as a borrowed string is.
impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Bytes::copy_from_slice(bytes).into()
    }
}

impl From<&String> for Body {
    fn from(text: &String) -> Self {
        text.as_str().into()
    }
}

impl From<&Vec<u8>> for Body {
    fn from(bytes: &Vec<u8>) -> Self {
        bytes.as_slice().into()
    }
}

/// A streamed body held to the length its caller declared.
struct ExactLength {
    chunks: Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>,
    declared: u64,
    seen: u64,
}

/// A streamed body yielded more or fewer bytes than declared.
#[derive(Debug)]
struct LengthMismatch {
    declared: u64,
    seen: u64,
    longer: bool,
}

impl std::fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.longer {
            write!(
                f,
                "the body yielded more than the {} bytes declared",
                self.declared
            )
        } else {
            write!(
                f,
                "the body ended after {} of the {} bytes declared",
                self.seen, self.declared
            )
        }
    }
}

impl std::error::Error for LengthMismatch {}

impl Stream for ExactLength {
    type Item = Result<Bytes, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.chunks.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let seen = this.seen.saturating_add(chunk.len() as u64);
                if seen > this.declared {
                    let (declared, longer) = (this.declared, true);
                    return Poll::Ready(Some(Err(Box::new(LengthMismatch {
                        declared,
                        seen,
                        longer,
                    }))));
                }
                this.seen = seen;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) if this.seen != this.declared => {
                let (declared, seen) = (this.declared, this.seen);
                this.seen = this.declared;
                let mismatch = LengthMismatch {
                    declared,
                    seen,
                    longer: false,
                };
                Poll::Ready(Some(Err(Box::new(mismatch))))
            }
            other => other,
        }
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
///
/// Read as a stream, a value is bounded by the idle-read timeout only (a large value on a slow
/// link may take long); [`ValueStream::with_deadline`] bounds its total time.
/// [`ValueStream::bytes`] is bounded by the call's deadline and by
/// [`ReadLimits::value_bytes`](crate::policy::ReadLimits::value_bytes).
pub struct ValueStream {
    provider: Provider,
    chunks: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>,
    /// The most bytes [`ValueStream::bytes`] collects.
    max_bytes: u64,
    /// When [`ValueStream::bytes`] gives up: the call's deadline, and its length.
    bytes_deadline: Option<(tokio::time::Instant, Duration)>,
    /// How long the stream itself may take ([`ValueStream::with_deadline`]), and its timer,
    /// armed on the first poll (so the stream can be made outside a runtime).
    deadline: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for ValueStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueStream")
            .field("provider", &self.provider)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl ValueStream {
    /// The value of a call that started at `started`: `bytes()` collects at most the configured
    /// [`ReadLimits::value_bytes`](crate::policy::ReadLimits::value_bytes) (else the provider's
    /// maximum) and ends at the call's `deadline`.
    pub(crate) fn for_call(
        provider: Provider,
        stream: progenitor_client::ByteStream,
        policy: &crate::policy::RequestPolicy,
        provider_max: u64,
        started: tokio::time::Instant,
        deadline: Option<Duration>,
    ) -> Self {
        ValueStream {
            provider,
            chunks: stream.into_inner(),
            max_bytes: value_bytes_limit(&policy.read_limits, provider_max),
            bytes_deadline: deadline.and_then(|d| Some((started.checked_add(d)?, d))),
            deadline: None,
            timer: None,
        }
    }

    /// A value already in memory, as `provider`'s stream: for stores that are not HTTP, such as
    /// [`MemoryStore`](crate::kv::MemoryStore) or a [`KvStore`](crate::kv::KvStore) of your own.
    ///
    /// ```
    /// # async fn demo() -> Result<(), edgekv::Error> {
    /// let value = edgekv::ValueStream::from_bytes(edgekv::Provider::Fastly, "apple");
    /// assert_eq!(value.bytes().await?, "apple");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_bytes(provider: Provider, value: impl Into<Bytes>) -> Self {
        let value = value.into();
        ValueStream {
            provider,
            chunks: Box::pin(futures_util::stream::iter([Ok(value)])),
            max_bytes: u64::MAX,
            bytes_deadline: None,
            deadline: None,
            timer: None,
        }
    }

    /// The same stream, failing with a timeout error ([`Error::is_timeout`]) if it has not ended
    /// `within` from its first poll: a bound on a streamed value's total time, where the
    /// idle-read timeout only bounds each silence.
    pub fn with_deadline(mut self, within: Duration) -> Self {
        self.deadline = Some(within);
        self.timer = None;
        self
    }

    /// The value as a [`tokio::io::AsyncRead`], to copy into a file or a decoder; errors come as
    /// `std::io::Error`s wrapping this crate's [`Error`].
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(item) = store.get("reports/2026-12").await? {
    ///     let mut file = tokio::fs::File::create("report.pdf").await?;
    ///     tokio::io::copy(&mut item.into_body().into_async_read(), &mut file).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send + Unpin {
        tokio_util::io::StreamReader::new(self.map_err(std::io::Error::other))
    }

    /// Reads the whole value (as [`bytes`](Self::bytes) does) and decodes it as JSON. A value
    /// that is not the expected JSON is a [`BadResponse`](crate::error::BadResponse) giving the
    /// line and column, never the value's text.
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Session { user: String, visits: u32 }
    ///
    /// if let Some(value) = namespace.get("session/42").await? {
    ///     let session: Session = value.into_body().json().await?;
    ///     println!("{} visited {} times", session.user, session.visits);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let provider = self.provider;
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            let reason = format!(
                "the value is not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            );
            Error::bad_response(provider, None, reason)
        })
    }

    /// Reads the whole value into memory: at most
    /// [`ReadLimits::value_bytes`](crate::policy::ReadLimits::value_bytes) (by default the
    /// provider's value maximum; past it, [`Error::is_answer_too_large`]) and within the call's
    /// deadline ([`Error::is_timeout`] after it).
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let provider = self.provider;
        let max = self.max_bytes;
        let deadline = self.bytes_deadline;
        let collect = async move {
            // Most values arrive in one chunk, which is returned as it is, without a copy.
            let Some(first) = self.next().await.transpose()? else {
                return Ok(Bytes::new());
            };
            check_collected(provider, first.len() as u64, max)?;
            let Some(second) = self.next().await.transpose()? else {
                return Ok(first);
            };
            let mut whole = bytes::BytesMut::from(&first[..]);
            whole.extend_from_slice(&second);
            check_collected(provider, whole.len() as u64, max)?;
            while let Some(chunk) = self.next().await {
                let chunk = chunk?;
                check_collected(provider, (whole.len() + chunk.len()) as u64, max)?;
                whole.extend_from_slice(&chunk);
            }
            Ok(whole.freeze())
        };
        match deadline {
            None => collect.await,
            Some((at, after)) => match tokio::time::timeout_at(at, collect).await {
                Ok(result) => result,
                Err(_) => {
                    let what = "the call's deadline, reading the value";
                    let timed_out = crate::error::TimedOut { what, after };
                    Err(Error::transport(provider, "timed out", timed_out))
                }
            },
        }
    }
}

/// The most bytes [`ValueStream::bytes`] collects: the configured limit, else the provider's
/// value maximum.
pub(crate) fn value_bytes_limit(limits: &crate::policy::ReadLimits, provider_max: u64) -> u64 {
    limits.value_bytes.unwrap_or(provider_max)
}

fn check_collected(provider: Provider, len: u64, max: u64) -> Result<(), Error> {
    if len <= max {
        return Ok(());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    Err(Error::answer_too_large(provider, limit, "value_bytes"))
}

impl Stream for ValueStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let provider = self.provider;
        if let Some(after) = self.deadline {
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
            if timer.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                // Nothing more is read after the deadline.
                self.chunks = Box::pin(futures_util::stream::empty());
                let what = "the value's deadline";
                let timed_out = crate::error::TimedOut { what, after };
                return Poll::Ready(Some(Err(Error::transport(
                    provider,
                    "timed out",
                    timed_out,
                ))));
            }
        }
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
