//! One namespace: values, their metadata and expiration, and key listings.

use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::multipart::{Form, Part};
use serde::de::DeserializeOwned;

use super::envelope::{self, Reply};
use super::{Client, limits, raw};
use crate::body::{Body, Repr, ValueStream};
use crate::error::{Error, InvalidInput, Provider, Secrets};
use crate::paging::{self, CursorPage};
use crate::policy::RetryPolicy;
use crate::transport::{self, Call};

/// A handle on one namespace. Cheap to clone; makes no request until used.
#[derive(Clone, Debug)]
pub struct Namespace {
    client: Client,
    id: Arc<str>,
    /// Whether the namespace stores URL-encoded keys literally (`supports_url_encoding` false).
    /// Looked up once, and only when a key that needs encoding is used, unless told.
    literal_keys: Arc<tokio::sync::OnceCell<bool>>,
    /// A retry policy for this handle's calls, instead of the client's.
    retry: Option<Arc<RetryPolicy>>,
}

/// A value read from a namespace.
#[derive(Debug)]
pub struct Value {
    expiration: Option<i64>,
    body: ValueStream,
}

impl Value {
    /// When the key expires, in seconds since the UNIX epoch (`None`: it does not).
    pub fn expiration(&self) -> Option<i64> {
        self.expiration
    }

    /// The value as a stream of chunks.
    pub fn into_body(self) -> ValueStream {
        self.body
    }

    /// Reads the whole value into memory.
    pub async fn bytes(self) -> Result<bytes::Bytes, Error> {
        self.body.bytes().await
    }
}

/// Options of [`Namespace::put`].
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct PutOptions {
    /// When the key expires, in seconds since the UNIX epoch.
    pub expiration: Option<i64>,
    /// Seconds from now after which the key expires (at least 60). Wins over `expiration`.
    pub expiration_ttl: Option<u64>,
    /// JSON stored with the key (at most 1024 bytes serialized); sent as a multipart form.
    pub metadata: Option<serde_json::Value>,
    /// Why the metadata given to [`metadata`](Self::metadata) could not be made JSON: the put
    /// is refused with it, before any request.
    pub(crate) metadata_error: Option<String>,
}

impl PutOptions {
    /// No expiration, no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expires the key at `unix_seconds`.
    pub fn expiration(mut self, unix_seconds: i64) -> Self {
        self.expiration = Some(unix_seconds);
        self
    }

    /// Expires the key `ttl` from now (at least 60 seconds), the name and type both providers'
    /// options share: whole seconds, rounded up.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = edgekv::cloudflare::PutOptions::new().ttl(Duration::from_secs(3600));
    /// assert_eq!(options.expiration_ttl, Some(3600));
    /// ```
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.expiration_ttl = Some(crate::policy::ttl_seconds(ttl));
        self
    }

    /// Expires the key `seconds` from now (at least 60).
    pub fn expiration_ttl(mut self, seconds: u64) -> Self {
        self.expiration_ttl = Some(seconds);
        self
    }

    /// Stores `metadata` with the key: anything `Serialize` (a `serde_json::Value`, your own
    /// struct), read back with [`Namespace::metadata_as`]. A value that cannot be made JSON
    /// (a map with non-string keys) makes the put fail before sending.
    ///
    /// ```
    /// #[derive(serde::Serialize)]
    /// struct Meta<'a> { content_type: &'a str, pages: u32 }
    ///
    /// let options = edgekv::cloudflare::PutOptions::new()
    ///     .expiration_ttl(3600)
    ///     .metadata(&Meta { content_type: "application/pdf", pages: 3 });
    /// assert_eq!(options.metadata.unwrap()["pages"], 3);
    /// ```
    pub fn metadata(mut self, metadata: impl serde::Serialize) -> Self {
        (self.metadata, self.metadata_error) = to_json(metadata);
        self
    }
}

/// Metadata as JSON, or why it cannot be.
pub(crate) fn to_json(
    metadata: impl serde::Serialize,
) -> (Option<serde_json::Value>, Option<String>) {
    match serde_json::to_value(metadata) {
        Ok(value) => (Some(value), None),
        Err(e) => (None, Some(format!("the metadata is not JSON: {e}"))),
    }
}

/// A key as listed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Key {
    /// The key.
    pub name: String,
    /// When it expires, in seconds since the UNIX epoch (`None`: it does not).
    pub expiration: Option<i64>,
    /// The JSON stored with it, if any.
    pub metadata: Option<serde_json::Value>,
}

/// One page of a key listing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct KeyPage {
    /// The keys on this page.
    pub keys: Vec<Key>,
    /// The cursor of the next page (`None` on the last page): give it to [`ListKeys::cursor`]
    /// to resume the listing later.
    pub cursor: Option<String>,
}

/// Options of a key listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListKeys {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Keys per page, 10 to 1000 (the service's default: 1000).
    pub limit: Option<u32>,
    /// Where to start: a cursor from an earlier [`KeyPage`].
    pub cursor: Option<String>,
    /// Pages fetched ahead of the consumer (default 1; 0: only when asked for).
    pub read_ahead: usize,
}

impl Default for ListKeys {
    fn default() -> Self {
        ListKeys {
            prefix: None,
            limit: None,
            cursor: None,
            read_ahead: 1,
        }
    }
}

impl ListKeys {
    /// Every key, one page read ahead.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Keys per page, 10 to 1000.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Resumes a listing at `cursor`.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Pages fetched ahead of the consumer; 0 fetches strictly on demand.
    pub fn read_ahead(mut self, pages: usize) -> Self {
        self.read_ahead = pages;
        self
    }
}

impl Namespace {
    pub(super) fn new(
        client: Client,
        id: String,
        literal_keys: Arc<tokio::sync::OnceCell<bool>>,
    ) -> Self {
        Namespace {
            client,
            id: id.into(),
            literal_keys,
            retry: None,
        }
    }

    /// The namespace identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tells the handle whether the namespace URL-decodes keys (`supports_url_encoding`), so it
    /// never needs to look it up. When false, keys that need encoding are refused.
    pub fn with_url_encoding(self, supported: bool) -> Self {
        Namespace {
            literal_keys: Arc::new(tokio::sync::OnceCell::from(!supported)),
            ..self
        }
    }

    /// The same namespace, its calls retried under `retry` instead of the client's policy
    /// (for example [`RetryPolicy::disabled()`] for one call whose failure the caller handles).
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Namespace {
            retry: Some(Arc::new(retry)),
            ..self
        }
    }

    /// The retry policy of this handle's calls.
    pub(super) fn retry_policy(&self) -> &RetryPolicy {
        self.retry
            .as_deref()
            .unwrap_or(&self.client.transport().policy().retry)
    }

    /// The same namespace, each call of it ending within `deadline` (its attempts, the waits between
    /// them and, for `bytes()`, reading the value): the retry policy's `deadline` for the calls of
    /// this handle, not another kind of timeout. Handles are cheap to clone, so one call can
    /// have its own: `namespace.clone().with_deadline(d).get(key)`.
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// use std::time::Duration;
    ///
    /// let quick = namespace.clone().with_deadline(Duration::from_millis(300));
    /// match quick.get("hot-key").await {
    ///     Err(error) if error.is_timeout() => println!("serving the stale copy"),
    ///     other => drop(other?),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_deadline(self, deadline: std::time::Duration) -> Self {
        let retry = self.retry_policy().clone().deadline(Some(deadline));
        self.with_retry(retry)
    }

    /// A call of this handle, under its retry policy.
    pub(super) fn op(&self, operation: &'static str) -> Call<'_> {
        super::op(operation).retry(self.retry.as_deref())
    }

    fn raw(&self) -> &raw::Client {
        self.client.raw()
    }

    fn account(&self) -> &str {
        self.client.account_id()
    }

    async fn check_key(&self, key: &str) -> Result<(), Error> {
        limits::check_key(key, false)?;
        if crate::transport::segment::needs_encoding(key) {
            let literal = *self
                .literal_keys
                .get_or_try_init(|| async {
                    let info = self.client.get_namespace(&self.id).await?;
                    Ok::<_, Error>(info.supports_url_encoding == Some(false))
                })
                .await?;
            limits::check_key(key, literal)?;
        }
        Ok(())
    }

    /// Reads a value: `Ok(None)` if the key does not exist (code 10009); a missing namespace is
    /// an error. The body streams; see [`Value`].
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// match namespace.get("config/app").await? {
    ///     Some(value) => println!("{} bytes", value.bytes().await?.len()),
    ///     None => println!("not set"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        crate::error::redacting(Secrets::key(key), async move {
            self.check_key(key).await?;
            let started = tokio::time::Instant::now();
            let get = || Some(self.raw().value_get(self.account(), &self.id, key));
            match transport::call(self.client.transport(), self.op("value_get"), get).await {
                Ok(response) => {
                    let expiration = header_i64(response.headers(), "expiration")?;
                    let body = ValueStream::for_call(
                        Provider::Cloudflare,
                        response.into_inner(),
                        self.client.transport().policy(),
                        limits::MAX_VALUE_BYTES,
                        started,
                        self.retry_policy().deadline,
                    );
                    Ok(Some(Value { expiration, body }))
                }
                Err(error) if is_missing_key(&error) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// Writes a value, replacing any value, expiration and metadata under the key.
    ///
    /// The value is sent as it is read: bytes and strings as they are, streams and readers
    /// chunked, never buffered whole. With metadata it is sent as a multipart form (the value
    /// part still streamed). Limits are checked first: the key, `expiration_ttl` at least 60,
    /// metadata at most 1024 bytes and, when its length is known, a value of at most 25 MiB.
    ///
    /// Retries: a value of bytes or a string is sent again after a retryable failure; a streamed
    /// one is sent once (its error then says the body could not be replayed).
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), Box<dyn std::error::Error>> {
    /// use edgekv::{Body, cloudflare::PutOptions};
    ///
    /// namespace.put("greeting", "hello", PutOptions::new().expiration_ttl(3600)).await?;
    /// let file = tokio::fs::File::open("report.pdf").await?;
    /// let len = file.metadata().await?.len();
    /// let options = PutOptions::new().metadata(serde_json::json!({"type": "pdf"}));
    /// namespace.put("reports/2026", Body::from_reader(file, Some(len)), options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Body>,
        options: PutOptions,
    ) -> Result<Reply<()>, Error> {
        let value = value.into();
        let (plain_value, metadata_text) = (
            value.as_bytes(),
            options.metadata.as_ref().map(|m| m.to_string()),
        );
        let secrets = Secrets::key(key)
            .with(plain_value.as_deref().unwrap_or_default(), "<value>")
            .with_opt(metadata_text.as_deref(), "<metadata>");
        crate::error::redacting(secrets, async move {
            if let Some(reason) = options.metadata_error {
                return Err(InvalidInput::Unbuildable { reason }.into());
            }
            self.check_key(key).await?;
            let checked = limits::check_write(
                value.len(),
                options.metadata.as_ref(),
                options.expiration_ttl,
            )?;
            let ttl = checked.expiration_ttl;
            let reply = match checked.metadata {
                None => {
                    let mut body = value.into_source();
                    let put = || {
                        let body = body.next()?.into_reqwest();
                        Some(self.raw().value_put(
                            self.account(),
                            &self.id,
                            key,
                            options.expiration,
                            ttl,
                            body,
                        ))
                    };
                    envelope::call(self.raw(), self.op("value_put"), put).await?
                }
                Some(metadata) => {
                    self.put_multipart(key, value, metadata, options.expiration, ttl)
                        .await?
                }
            };
            Ok(reply.map(drop))
        })
        .await
    }

    /// The multipart form of a value write, which progenitor cannot generate.
    async fn put_multipart(
        &self,
        key: &str,
        value: Body,
        metadata: String,
        expiration: Option<i64>,
        expiration_ttl: Option<i64>,
    ) -> Result<Reply<Option<serde_json::Value>>, Error> {
        use crate::transport::segment::encode;
        use progenitor_client::ClientInfo as _;
        let raw = self.raw();
        let url = format!(
            "{}/accounts/{}/storage/kv/namespaces/{}/values/{}",
            raw.baseurl(),
            encode(self.account()),
            encode(&self.id),
            encode(key)
        );
        let mut query = Vec::new();
        query.extend(expiration.map(|e| ("expiration", e)));
        query.extend(expiration_ttl.map(|t| ("expiration_ttl", t)));
        let mut value = value.into_source();
        let request = || {
            let value_part = match value.next()? {
                Repr::Bytes(bytes) => Part::stream_with_length(bytes.clone(), bytes.len() as u64),
                Repr::Stream {
                    body,
                    len: Some(len),
                } => Part::stream_with_length(body, len),
                Repr::Stream { body, len: None } => Part::stream(body),
            };
            let form = Form::new()
                .part("value", value_part)
                .text("metadata", metadata.clone());
            let request = raw.client().put(&url).query(&query).multipart(form).build();
            Some(request.map_err(|e| {
                Error::from(InvalidInput::Unbuildable {
                    reason: e.to_string(),
                })
            }))
        };
        let accept = |status: reqwest::StatusCode| status.is_success();
        let (status, body) = transport::send::<_, raw::types::Failure, _>(
            raw,
            self.op("value_put"),
            accept,
            request,
        )
        .await?;
        let transport = self.client.transport();
        let body = transport::decode_json::<raw::types::EmptyResponse>(
            Provider::Cloudflare,
            status,
            &body,
        )
        .map_err(|e| transport.redact_credential(e))?;
        envelope::unwrap(transport, status, body)
    }

    /// Deletes a key and its value. A key that does not exist is not an error: Cloudflare
    /// answers success, as Fastly's delete does by default (`fastly::DeleteOptions::force`).
    pub async fn delete(&self, key: &str) -> Result<Reply<()>, Error> {
        crate::error::redacting(Secrets::key(key), async move {
            self.check_key(key).await?;
            let delete = || Some(self.raw().value_delete(self.account(), &self.id, key));
            let reply = envelope::call(self.raw(), self.op("value_delete"), delete).await?;
            Ok(reply.map(drop))
        })
        .await
    }

    /// Reads a key's metadata: `Ok(None)` if the key does not exist, `Some(Value::Null)` if it
    /// has none.
    pub async fn metadata(&self, key: &str) -> Result<Option<serde_json::Value>, Error> {
        crate::error::redacting(Secrets::key(key), async move {
            self.check_key(key).await?;
            let get = || Some(self.raw().metadata_get(self.account(), &self.id, key));
            match envelope::call(self.raw(), self.op("metadata_get"), get).await {
                Ok(reply) => Ok(Some(reply.into_inner().unwrap_or(serde_json::Value::Null))),
                Err(error) if is_missing_key(&error) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// Reads a key's metadata as `T`: `Ok(None)` if the key does not exist.
    pub async fn metadata_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(metadata) = self.metadata(key).await? else {
            return Ok(None);
        };
        serde_json::from_value(metadata).map(Some).map_err(|e| {
            // serde's message quotes the metadata, which is the caller's: only its kind is kept.
            let reason = format!(
                "the metadata is not the type asked for ({:?})",
                e.classify()
            );
            Error::bad_response(Provider::Cloudflare, None, reason)
        })
    }

    /// Every key (with its expiration and metadata), page by page under the hood.
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// use edgekv::cloudflare::ListKeys;
    /// use futures_util::TryStreamExt as _;
    ///
    /// let mut keys = namespace.keys(ListKeys::new().prefix("user/"));
    /// while let Some(key) = keys.try_next().await? {
    ///     println!("{} expires {:?}", key.name, key.expiration);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn keys(&self, options: ListKeys) -> BoxStream<'static, Result<Key, Error>> {
        paging::items(self.pages(options), |page| page.items)
    }

    /// The key listing a page at a time, each with the cursor to resume after it.
    pub fn key_pages(&self, options: ListKeys) -> BoxStream<'static, Result<KeyPage, Error>> {
        let page = |page: CursorPage<Key>| KeyPage {
            keys: page.items,
            cursor: page.cursor,
        };
        self.pages(options).map(move |p| p.map(page)).boxed()
    }

    fn pages(&self, options: ListKeys) -> paging::Pages<CursorPage<Key>> {
        let namespace = self.clone();
        let ListKeys {
            prefix,
            limit,
            cursor,
            read_ahead,
        } = options;
        let checked =
            limits::check_page_limit("limit", limit, limits::KEYS_PAGE_LIMIT, "10 to 1000");
        let sent_prefix = prefix.clone();
        paging::by_cursor(
            Provider::Cloudflare,
            read_ahead,
            cursor,
            prefix,
            move |cursor| {
                let (namespace, prefix) = (namespace.clone(), sent_prefix.clone());
                let checked = checked.clone();
                async move {
                    checked?;
                    let list = || {
                        let (account, id) = (namespace.account(), &namespace.id);
                        Some(namespace.raw().keys_list(
                            account,
                            id,
                            cursor.as_deref(),
                            limit,
                            prefix.as_deref(),
                        ))
                    };
                    let transport = namespace.client.transport();
                    let response =
                        transport::call(transport, namespace.op("keys_list"), list).await?;
                    let status = response.status();
                    let body = response.into_inner();
                    let next = body
                        .result_info
                        .as_ref()
                        .and_then(|info| info.cursor.clone());
                    let (keys, _) = envelope::unwrap(transport, status, body)?.into_parts();
                    let keys = keys
                        .into_iter()
                        .map(|k| Key {
                            name: k.name,
                            expiration: k.expiration,
                            metadata: k.metadata,
                        })
                        .collect();
                    Ok((keys, next))
                }
            },
        )
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Refuses an account or namespace id no URL can carry.
    pub(super) fn check_ids(&self) -> Result<(), InvalidInput> {
        crate::keys::check_id(self.account())?;
        crate::keys::check_id(&self.id)
    }
}

/// Whether an error is the service saying the key does not exist (code 10009 on an answer that
/// is not a server error: a 5xx says nothing reliable about the key).
fn is_missing_key(error: &Error) -> bool {
    error.status().is_some_and(|s| !s.is_server_error()) && error.codes().contains(&10009)
}

fn header_i64(headers: &reqwest::header::HeaderMap, name: &str) -> Result<Option<i64>, Error> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let parsed = value.to_str().ok().and_then(|v| v.trim().parse().ok());
    // Not quoted: the server's header text could echo anything of ours.
    parsed.map(Some).ok_or_else(|| {
        Error::bad_response(
            Provider::Cloudflare,
            None,
            format!("the {name} header is not a number"),
        )
    })
}
