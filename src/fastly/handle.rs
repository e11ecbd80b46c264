//! One store: items with their generation and metadata, and key listings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::header::HeaderName;

use super::{Client, limits, raw};
use crate::body::{Body, ValueStream};
use crate::error::{Error, Provider, Secrets};
use crate::paging::{self, CursorPage};
use crate::policy::RetryPolicy;
use crate::transport::{self, Call};

/// An item's answer headers, named once rather than parsed from text on every read.
const GENERATION: HeaderName = HeaderName::from_static("generation");
const METADATA: HeaderName = HeaderName::from_static("metadata");

/// A handle on one store. Cheap to clone; makes no request until used.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    id: Arc<str>,
    /// Set once any call has shown the store exists. Fastly answers 404 both for a missing item
    /// and a missing store; a 404 on `get` is "no such key" only once the store is known to exist.
    exists: Arc<AtomicBool>,
    /// A retry policy for this handle's calls, instead of the client's.
    retry: Option<Arc<RetryPolicy>>,
}

/// An item read from a store.
#[derive(Debug)]
pub struct Item {
    generation: u64,
    metadata: Option<String>,
    body: ValueStream,
}

impl Item {
    /// The item's generation marker, for [`PutOptions::if_generation_match`] and
    /// [`DeleteOptions::if_generation_match`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The metadata stored with the item (`None` when there is none).
    pub fn metadata(&self) -> Option<&str> {
        self.metadata.as_deref()
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

/// How a write combines with what is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteMode {
    /// Replace the value (the default).
    #[default]
    Overwrite,
    /// Write only if the key does not exist; otherwise the service answers 412
    /// ([`Error::is_precondition_failed`]).
    Add,
    /// Append to the stored value (creating it if absent).
    Append,
    /// Prepend to the stored value (creating it if absent).
    Prepend,
}

/// Options of [`Store::put`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Write only if the item's generation is this one (412 otherwise).
    pub if_generation_match: Option<u64>,
    /// Seconds after which the item expires.
    pub ttl_seconds: Option<u32>,
    /// Metadata stored with the item (at most 2000 bytes; sent as a header).
    pub metadata: Option<String>,
    /// How the write combines with what is stored.
    pub mode: WriteMode,
    /// Let the write complete in the background, answering sooner.
    pub background_fetch: bool,
}

impl PutOptions {
    /// Overwrite, unconditionally, without TTL or metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write only if the item's generation is `generation`.
    pub fn if_generation_match(mut self, generation: u64) -> Self {
        self.if_generation_match = Some(generation);
        self
    }

    /// Expire the item after `ttl`, the name and type both providers' options share (whole
    /// seconds, rounded up; capped at `u32::MAX` seconds, about 136 years, the most Fastly's
    /// `time_to_live_sec` can say).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = edgekv::fastly::PutOptions::new().ttl(Duration::from_millis(1500));
    /// assert_eq!(options.ttl_seconds, Some(2));
    /// ```
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        let seconds = crate::policy::ttl_seconds(ttl);
        self.ttl_seconds = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
    }

    /// Expire the item after `seconds`.
    pub fn ttl_seconds(mut self, seconds: u32) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }

    /// Store `metadata` with the item.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// Combine with the stored value as `mode` says.
    pub fn mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Let the write complete in the background.
    pub fn background_fetch(mut self, background_fetch: bool) -> Self {
        self.background_fetch = background_fetch;
        self
    }
}

/// Options of [`Store::delete`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOptions {
    /// Delete only if the item's generation is this one (412 otherwise).
    pub if_generation_match: Option<u64>,
    /// Succeed even if the item does not exist (Fastly's `force`). On by default, so a missing
    /// key is not an error, as on Cloudflare; off, a missing item is a 404 error.
    pub force: bool,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            if_generation_match: None,
            force: true,
        }
    }
}

impl DeleteOptions {
    /// Unconditional, and a missing item is not an error (`force` on).
    ///
    /// ```
    /// let options = edgekv::fastly::DeleteOptions::new();
    /// assert!(options.force);
    /// // To learn whether the item was there: a missing one is then an `is_not_found()` error.
    /// let strict = edgekv::fastly::DeleteOptions::new().force(false).if_generation_match(7);
    /// assert_eq!((strict.force, strict.if_generation_match), (false, Some(7)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Delete only if the item's generation is `generation`.
    pub fn if_generation_match(mut self, generation: u64) -> Self {
        self.if_generation_match = Some(generation);
        self
    }

    /// Succeed even if the item does not exist (the default), or not (`false`: a 404 error).
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// Whether a key listing must reflect every completed write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// Every completed write (the service's default).
    Strong,
    /// May lag behind recent writes; cheaper.
    Eventual,
}

/// One page of a key listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPage {
    /// The keys on this page.
    pub keys: Vec<String>,
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
    /// Keys per page (the service's default: 1000).
    pub limit: Option<u32>,
    /// Strong (default) or eventual.
    pub consistency: Option<Consistency>,
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
            consistency: None,
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

    /// Keys per page (at least 1).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Strong or eventual consistency.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = Some(consistency);
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

impl Store {
    pub(super) fn new(client: Client, id: String, exists: Arc<AtomicBool>) -> Self {
        Store {
            client,
            id: id.into(),
            exists,
            retry: None,
        }
    }

    /// Tells the handle (and every handle of its client on this store) that the store exists,
    /// so a `get` of a missing item answers `Ok(None)` from its one request, without asking
    /// whether the store exists. If the store does not in fact exist, such a `get` answers
    /// `Ok(None)` too.
    ///
    /// ```no_run
    /// # async fn demo(client: edgekv::fastly::Client) -> Result<(), edgekv::Error> {
    /// let store = client.store("iaa48y0oxw13s12xpfdkk9").known_to_exist();
    /// assert!(store.get("never-written").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn known_to_exist(self) -> Self {
        self.seen();
        self
    }

    /// The store ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same store, its calls retried under `retry` instead of the client's policy (for
    /// example [`RetryPolicy::disabled()`] for one call whose failure the caller handles).
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Store {
            retry: Some(Arc::new(retry)),
            ..self
        }
    }

    /// The same store, each call of it ending within `deadline` (its attempts, the waits between
    /// them and, for `bytes()`, reading the value): the retry policy's `deadline` for the calls of
    /// this handle, not another kind of timeout. Handles are cheap to clone, so one call can
    /// have its own: `store.clone().with_deadline(d).get(key)`.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// use std::time::Duration;
    ///
    /// let quick = store.clone().with_deadline(Duration::from_millis(300));
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

    pub(super) fn raw(&self) -> &raw::Client {
        self.client.raw()
    }

    /// The retry policy of this handle's calls.
    fn retry_policy(&self) -> &RetryPolicy {
        self.retry
            .as_deref()
            .unwrap_or(&self.client.transport().policy().retry)
    }

    fn seen(&self) {
        self.exists.store(true, Ordering::Relaxed);
    }

    /// Whether the store exists: known from an earlier success, else asked once. This is another
    /// request (the store, not the item), not a retry of the `get` that led here: it is one call
    /// with the handle's own retries, and takes nothing from the `get`'s attempts (a handle with
    /// retries disabled must still be able to ask).
    pub(super) async fn confirm_exists(&self) -> Result<(), Error> {
        if !self.exists.load(Ordering::Relaxed) {
            let get = || Some(self.raw().kv_store_get(&self.id));
            transport::call(
                self.client.transport(),
                self.op("kv_store_get").aside(),
                get,
            )
            .await?;
            self.seen();
        }
        Ok(())
    }

    /// Reads an item: `Ok(None)` if the key does not exist; a missing store is an error. The
    /// value streams; see [`Item`].
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// if let Some(item) = store.get("apple").await? {
    ///     println!("generation {} metadata {:?}", item.generation(), item.metadata());
    ///     let value = item.bytes().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<Item>, Error> {
        crate::error::redacting(Secrets::key(key), async move {
            limits::check_key(key)?;
            let started = tokio::time::Instant::now();
            let get = || Some(self.raw().kv_store_get_item(&self.id, key));
            match transport::call(self.client.transport(), self.op("kv_store_get_item"), get).await
            {
                Ok(response) => {
                    self.seen();
                    let headers = response.headers();
                    let generation = headers
                        .get(&GENERATION)
                        .and_then(|g| g.to_str().ok())
                        .and_then(|g| g.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            Error::bad_response(
                                Provider::Fastly,
                                Some(response.status()),
                                "no valid generation header",
                            )
                        })?;
                    // Metadata that is not UTF-8 is refused rather than silently altered.
                    let metadata = match headers.get(&METADATA) {
                        None => None,
                        Some(m) => {
                            Some(String::from_utf8(m.as_bytes().to_vec()).map_err(|_| {
                                Error::bad_response(
                                    Provider::Fastly,
                                    Some(response.status()),
                                    "the metadata header is not UTF-8",
                                )
                            })?)
                        }
                    }
                    .filter(|m| !m.is_empty());
                    let body = ValueStream::for_call(
                        Provider::Fastly,
                        response.into_inner(),
                        self.client.transport().policy(),
                        limits::MAX_VALUE_BYTES,
                        started,
                        self.retry_policy().deadline,
                    );
                    Ok(Some(Item {
                        generation,
                        metadata,
                        body,
                    }))
                }
                Err(error) if error.status() == Some(StatusCode::NOT_FOUND) => {
                    self.confirm_exists().await?;
                    Ok(None)
                }
                Err(error) => Err(error),
            }
        })
        .await
    }

    /// Writes an item. The value is sent as it is read (bytes and strings as they are, streams
    /// and readers chunked, never buffered whole). Checked first: the key, the metadata (at most
    /// 2000 bytes, a valid header value) and, when its length is known, a value of at most
    /// 25,000,000 bytes. A generation mismatch, or [`WriteMode::Add`] on an existing key, is an
    /// error whose [`is_precondition_failed()`](Error::is_precondition_failed) is true.
    ///
    /// Retries: a plain overwrite is retried (a value of bytes or a string is sent again; a
    /// streamed one is sent once). Add, append, prepend and `if_generation_match` writes are
    /// retried only when the request provably never left, unless `retry_non_idempotent` is set: after a
    /// lost success a retry would answer 412 or apply twice.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// use edgekv::fastly::{PutOptions, WriteMode};
    ///
    /// match store.put("lock", "me", PutOptions::new().mode(WriteMode::Add).ttl_seconds(60)).await {
    ///     Ok(()) => println!("acquired"),
    ///     Err(e) if e.is_precondition_failed() => println!("already held"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Body>,
        options: PutOptions,
    ) -> Result<(), Error> {
        let value = value.into();
        let (plain_value, metadata_text) = (value.as_bytes(), options.metadata.clone());
        let secrets = Secrets::key(key)
            .with(plain_value.as_deref().unwrap_or_default(), "<value>")
            .with_opt(metadata_text.as_deref(), "<metadata>");
        crate::error::redacting(secrets, async move {
            limits::check_write(key, value.len(), options.metadata.as_deref())?;
            let flag = |mode: WriteMode| (options.mode == mode).then_some(true);
            let mut body = value.into_source();
            let put = || {
                let body = body.next()?.into_reqwest();
                Some(self.raw().kv_store_upsert_item(
                    &self.id,
                    key,
                    flag(WriteMode::Add),
                    flag(WriteMode::Append),
                    options.background_fetch.then_some(true),
                    flag(WriteMode::Prepend),
                    options.if_generation_match,
                    options.metadata.as_deref(),
                    options.ttl_seconds,
                    body,
                ))
            };
            // A lost answer makes a retry of these wrong: a second add or a conditional write would
            // answer 412 for the first one's success, and a second append would append twice.
            let not_idempotent =
                options.mode != WriteMode::Overwrite || options.if_generation_match.is_some();
            transport::call(
                self.client.transport(),
                self.op("kv_store_upsert_item")
                    .not_idempotent_if(not_idempotent),
                put,
            )
            .await?;
            self.seen();
            Ok(())
        })
        .await
    }

    /// Deletes an item. With [`DeleteOptions::if_generation_match`] a mismatch is an error whose
    /// [`is_precondition_failed()`](Error::is_precondition_failed) is true.
    ///
    /// A missing item is not an error, as on Cloudflare: an unconditional delete sends Fastly's
    /// `force` ([`DeleteOptions::new`]). With [`DeleteOptions::force`]`(false)`, or with
    /// `if_generation_match` (a condition on an item that is not there cannot hold; `force` is
    /// then not sent, as go-fastly's recorded conditional delete shows), Fastly answers 404 for
    /// it, an error whose `is_not_found()` is true. The bulk deletes, `delete_prefix` and
    /// `clear` count a missing item as deleted.
    ///
    /// Whether Fastly answers a forced delete in a store that does not exist with 404 is not on
    /// record (the emulator does), so a forced delete's success is not taken as proof that the
    /// store exists; the bulk deletes ask once, first.
    ///
    /// Retries: a plain delete is retried (without `force`, one that then finds the item gone
    /// counts as done); with `if_generation_match` only when the request provably never left.
    pub async fn delete(&self, key: &str, options: DeleteOptions) -> Result<(), Error> {
        crate::error::redacting(Secrets::key(key), async move {
            limits::check_key(key)?;
            let forced = options.force && options.if_generation_match.is_none();
            let force = forced.then_some(true);
            let delete = || {
                Some(self.raw().kv_store_delete_item(
                    &self.id,
                    key,
                    force,
                    options.if_generation_match,
                ))
            };
            let call = self
                .op("kv_store_delete_item")
                .not_idempotent_if(options.if_generation_match.is_some());
            match transport::call(self.client.transport(), call, delete).await {
                Ok(_) if !forced => self.seen(),
                Ok(_) => {}
                // The transport retried (nothing is resent here): its first attempt may have
                // deleted the item, which is gone either way. (With `force` a missing item is
                // no 404: the 404 is then the store's, an error.)
                Err(error)
                    if !forced
                        && error.status() == Some(StatusCode::NOT_FOUND)
                        && error.attempts() > 1 => {}
                Err(error) => return Err(error),
            }
            Ok(())
        })
        .await
    }

    /// Every key, page by page under the hood.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// use edgekv::fastly::{Consistency, ListKeys};
    /// use futures_util::TryStreamExt as _;
    ///
    /// let keys: Vec<String> = store.keys(ListKeys::new().prefix("user/").consistency(Consistency::Eventual)).try_collect().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn keys(&self, options: ListKeys) -> BoxStream<'static, Result<String, Error>> {
        paging::items(self.pages(options), |page| page.items)
    }

    /// The key listing a page at a time, each with the cursor to resume after it.
    pub fn key_pages(&self, options: ListKeys) -> BoxStream<'static, Result<KeyPage, Error>> {
        let page = |page: CursorPage<String>| KeyPage {
            keys: page.items,
            cursor: page.cursor,
        };
        self.pages(options).map(move |p| p.map(page)).boxed()
    }

    fn pages(&self, options: ListKeys) -> paging::Pages<CursorPage<String>> {
        let store = self.clone();
        let ListKeys {
            prefix,
            limit,
            consistency,
            cursor,
            read_ahead,
        } = options;
        let limit = limits::page_limit(limit);
        let consistency = consistency.map(|c| match c {
            Consistency::Strong => raw::types::KvStoreConsistency::Strong,
            Consistency::Eventual => raw::types::KvStoreConsistency::Eventual,
        });
        let sent_prefix = prefix.clone();
        paging::by_cursor(
            Provider::Fastly,
            read_ahead,
            cursor,
            prefix,
            move |cursor| {
                let (store, prefix, limit) = (store.clone(), sent_prefix.clone(), limit.clone());
                async move {
                    let limit = limit?;
                    let list = || {
                        let (cursor, prefix) = (cursor.as_deref(), prefix.as_deref());
                        Some(store.raw().kv_store_list_item_keys(
                            &store.id,
                            consistency,
                            cursor,
                            limit,
                            prefix,
                        ))
                    };
                    let call = store.op("kv_store_list_item_keys");
                    let page = transport::call(store.client.transport(), call, list)
                        .await?
                        .into_inner();
                    store.seen();
                    Ok((page.data, page.meta.next_cursor))
                }
            },
        )
    }
}
