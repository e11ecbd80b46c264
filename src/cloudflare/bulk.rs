//! Bulk writes, deletes and reads, split to the service's limits without losing a key.
//!
//! Entries are read lazily; each request body is built as a bounded in-memory chunk (at most
//! 10,000 pairs and [`BulkOptions::max_request_bytes`]), so memory stays about chunk size ×
//! concurrency for any number of entries, and a chunk can be sent again. Keys the service lists
//! in `unsuccessful_keys` are sent again after a backoff (the service allows one write per second
//! per key); whatever still fails is reported by key and by the caller's own index:
//! `written + failed.len()` is always the number of entries submitted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, Stream, StreamExt as _};

use super::envelope::{self, Reply};
use super::{Namespace, limits, raw::types};
use crate::bulk::{BulkReport, Chunk, FailedKey, chunked, refused};
use crate::error::{Error, InvalidInput};
use crate::policy::Budget;

/// One pair to write.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkEntry {
    key: String,
    value: EntryValue,
    expiration: Option<i64>,
    expiration_ttl: Option<u64>,
    metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq)]
enum EntryValue {
    Text(String),
    Bytes(Bytes),
}

impl BulkEntry {
    /// A text value, stored as UTF-8.
    pub fn text(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::with(key.into(), EntryValue::Text(value.into()))
    }

    /// A binary value, sent base64-encoded and stored as the original bytes.
    pub fn bytes(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self::with(key.into(), EntryValue::Bytes(value.into()))
    }

    fn with(key: String, value: EntryValue) -> Self {
        BulkEntry {
            key,
            value,
            expiration: None,
            expiration_ttl: None,
            metadata: None,
        }
    }

    /// Expires the key at `unix_seconds`.
    pub fn expiration(mut self, unix_seconds: i64) -> Self {
        self.expiration = Some(unix_seconds);
        self
    }

    /// Expires the key `seconds` from now (at least 60).
    pub fn expiration_ttl(mut self, seconds: u64) -> Self {
        self.expiration_ttl = Some(seconds);
        self
    }

    /// Stores `metadata` with the key (at most 1024 bytes serialized).
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The wire item, after the checks a single write would get.
    fn into_item(self) -> Result<types::BulkWriteItem, InvalidInput> {
        check_bulk_key(&self.key)?;
        limits::check_ttl(self.expiration_ttl)?;
        if let Some(metadata) = &self.metadata {
            limits::metadata_json(metadata)?;
        }
        let (value, base64) = match self.value {
            EntryValue::Text(text) => (text, None),
            EntryValue::Bytes(bytes) => (
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                Some(true),
            ),
        };
        limits::check_value_len(Some(value.len() as u64))?;
        let expiration_ttl = self
            .expiration_ttl
            .map(|t| {
                i64::try_from(t).map_err(|_| InvalidInput::OutOfRange {
                    what: "expiration_ttl",
                    allowed: "at most i64::MAX",
                })
            })
            .transpose()?;
        Ok(types::BulkWriteItem {
            key: self.key,
            value,
            base64,
            expiration: self.expiration,
            expiration_ttl,
            metadata: self.metadata,
        })
    }
}

/// Keys in a bulk body travel in JSON, not in a URL: any non-empty key within the length limit.
fn check_bulk_key(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::UnaddressableKey { key: String::new() });
    }
    crate::keys::check_length(key, limits::MAX_KEY_BYTES)
}

/// How bulk calls run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkOptions {
    /// Requests in flight at once (default 4).
    pub concurrency: usize,
    /// Largest request body of a bulk write, in bytes (default and maximum: the service's
    /// 100 MB, [`limits::BULK_WRITE_MAX_BYTES`]).
    pub max_request_bytes: usize,
    /// Shortest wait before keys listed in `unsuccessful_keys` are sent again (default 1 s: the
    /// service allows one write per second per key). How often, with what backoff and until
    /// when is the namespace's [`RetryPolicy`](crate::policy::RetryPolicy), shared with the
    /// retries of each request: a chunk makes at most `max_attempts` requests in all.
    pub min_key_interval: Duration,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            concurrency: 4,
            max_request_bytes: limits::BULK_WRITE_MAX_BYTES,
            min_key_interval: Duration::from_secs(1),
        }
    }
}

impl BulkOptions {
    fn check(&self) -> Result<(), InvalidInput> {
        if self.concurrency == 0 {
            return Err(InvalidInput::OutOfRange {
                what: "concurrency",
                allowed: "at least 1",
            });
        }
        if !(1024..=limits::BULK_WRITE_MAX_BYTES).contains(&self.max_request_bytes) {
            return Err(InvalidInput::OutOfRange {
                what: "max_request_bytes",
                allowed: "1024 to 100,000,000",
            });
        }
        Ok(())
    }
}

/// Options of [`Namespace::bulk_get`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkGetOptions {
    /// Parse each value as JSON (`type: json`) instead of returning text.
    pub json: bool,
    /// Return each key's metadata and expiration too.
    pub with_metadata: bool,
}

/// A value read by [`Namespace::bulk_get`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BulkValue {
    /// The value: a JSON string for text, any JSON with [`BulkGetOptions::json`].
    pub value: serde_json::Value,
    /// The metadata, when asked for and present.
    pub metadata: Option<serde_json::Value>,
    /// When the key expires, when asked for and set.
    pub expiration: Option<i64>,
}

/// A bulk write or delete's answer.
type BulkAnswer = Result<Reply<Option<types::BulkResult>>, Error>;

/// A bulk request body whose items are keyed.
trait BulkBody: Send + Sync + 'static {
    type Item: Send + Sync;
    fn items(&mut self) -> &mut Vec<Self::Item>;
    fn key(item: &Self::Item) -> &str;
    fn send<'a>(
        &'a self,
        namespace: &'a Namespace,
        budget: &'a Budget,
    ) -> BoxFuture<'a, BulkAnswer>;
}

impl BulkBody for types::BulkWrite {
    type Item = types::BulkWriteItem;
    fn items(&mut self) -> &mut Vec<Self::Item> {
        &mut self.0
    }
    fn key(item: &Self::Item) -> &str {
        &item.key
    }
    fn send<'a>(&'a self, ns: &'a Namespace, budget: &'a Budget) -> BoxFuture<'a, BulkAnswer> {
        let write = || {
            Some(
                ns.client()
                    .raw()
                    .bulk_write(ns.client().account_id(), ns.id(), self),
            )
        };
        envelope::call(ns.client().raw(), ns.op("bulk_write").budget(budget), write).boxed()
    }
}

impl BulkBody for types::BulkDelete {
    type Item = String;
    fn items(&mut self) -> &mut Vec<Self::Item> {
        &mut self.0
    }
    fn key(item: &Self::Item) -> &str {
        item
    }
    fn send<'a>(&'a self, ns: &'a Namespace, budget: &'a Budget) -> BoxFuture<'a, BulkAnswer> {
        let delete = || {
            Some(
                ns.client()
                    .raw()
                    .bulk_delete(ns.client().account_id(), ns.id(), self),
            )
        };
        envelope::call(
            ns.client().raw(),
            ns.op("bulk_delete").budget(budget),
            delete,
        )
        .boxed()
    }
}

impl Namespace {
    /// Writes every entry, in requests of at most 10,000 pairs and
    /// [`BulkOptions::max_request_bytes`], [`BulkOptions::concurrency`] at a time. See the
    /// module docs for what is retried and reported. Fails as a whole only for bad options.
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// use edgekv::cloudflare::{BulkEntry, BulkOptions};
    ///
    /// let entries = (0..50_000).map(|i| BulkEntry::text(format!("user/{i}"), "{}").expiration_ttl(86_400));
    /// let report = namespace.bulk_write(entries, &BulkOptions::default()).await?;
    /// for failed in &report.failed {
    ///     eprintln!("#{} {}: {}", failed.index, failed.key, failed.reason);
    /// }
    /// assert_eq!(report.submitted(), 50_000);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bulk_write<I>(
        &self,
        entries: I,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error>
    where
        I: IntoIterator<Item = BulkEntry>,
        I::IntoIter: Send,
    {
        self.bulk_write_stream(futures_util::stream::iter(entries), options)
            .await
    }

    /// [`bulk_write`](Self::bulk_write) from a stream of entries, read as requests go out.
    pub async fn bulk_write_stream<S>(
        &self,
        entries: S,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error>
    where
        S: Stream<Item = BulkEntry> + Send,
    {
        options.check()?;
        let max_bytes = options.max_request_bytes;
        let chunks = chunked(
            entries.boxed(),
            limits::BULK_WRITE_MAX_PAIRS,
            max_bytes,
            |index, entry: BulkEntry| {
                let key = entry.key.clone();
                let item = entry.into_item().map_err(|e| refused(&key, index, &e))?;
                // The item's share of the body: its JSON and a separating comma.
                let size = serde_json::to_vec(&item)
                    .map(|v| v.len() + 1)
                    .unwrap_or(usize::MAX);
                if size + 2 > max_bytes {
                    let reason = format!(
                        "the entry alone is {size} bytes, over the request bound of {max_bytes}"
                    );
                    return Err(FailedKey { key, index, reason });
                }
                Ok((item, size))
            },
        );
        Ok(self
            .run_chunks(chunks.map(|c| c.map_body(types::BulkWrite)), options)
            .await)
    }

    /// Deletes every key, in requests of at most 10,000 keys. Reported like a write.
    pub async fn bulk_delete<I, K>(
        &self,
        keys: I,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error>
    where
        I: IntoIterator<Item = K>,
        I::IntoIter: Send,
        K: Into<String>,
    {
        options.check()?;
        let keys = futures_util::stream::iter(keys.into_iter().map(Into::into));
        let chunks = chunked(
            keys.boxed(),
            limits::BULK_DELETE_MAX_KEYS,
            usize::MAX,
            |index, key: String| {
                check_bulk_key(&key).map_err(|e| refused(&key, index, &e))?;
                Ok((key, 0))
            },
        );
        Ok(self
            .run_chunks(chunks.map(|c| c.map_body(types::BulkDelete)), options)
            .await)
    }

    async fn run_chunks<B: BulkBody>(
        &self,
        chunks: impl Stream<Item = Chunk<B>> + Send,
        options: &BulkOptions,
    ) -> BulkReport {
        let mut report = BulkReport::default();
        let outcomes = chunks
            .map(|chunk| self.send_chunk(chunk, options))
            .buffer_unordered(options.concurrency);
        let mut outcomes = std::pin::pin!(outcomes);
        while let Some(outcome) = outcomes.next().await {
            report.absorb(outcome);
        }
        report
    }

    /// Sends one chunk, then again its unsuccessful keys with backoff, and reports every key.
    async fn send_chunk<B: BulkBody>(&self, chunk: Chunk<B>, options: &BulkOptions) -> BulkReport {
        let Chunk {
            mut body,
            mut indices,
            rejected,
        } = chunk;
        let mut report = BulkReport {
            written: 0,
            failed: rejected,
        };
        let retry = self.retry_policy();
        let budget = Budget::new(retry);
        let mut sends = 0;
        while !body.items().is_empty() {
            sends += 1;
            let unsuccessful: HashSet<String> = match body.send(self, &budget).await {
                Ok(reply) => reply
                    .into_inner()
                    .map(|r| r.unsuccessful_keys.into_iter().collect())
                    .unwrap_or_default(),
                Err(error) => {
                    let reason = error.to_string();
                    let keys = body.items().iter().map(B::key);
                    report.fail_all(keys.zip(indices.iter().copied()), &reason);
                    return report;
                }
            };
            let before = body.items().len();
            let mut keep = Vec::with_capacity(unsuccessful.len());
            let mut kept_indices = Vec::with_capacity(unsuccessful.len());
            for (item, index) in body.items().drain(..).zip(indices.drain(..)) {
                if unsuccessful.contains(B::key(&item)) {
                    keep.push(item);
                    kept_indices.push(index);
                }
            }
            report.written += (before - keep.len()) as u64;
            *body.items() = keep;
            indices = kept_indices;
            if body.items().is_empty() {
                break;
            }
            let wait = retry.backoff(sends + 1).max(options.min_key_interval);
            if !budget.allows(wait) {
                let reason = format!(
                    "listed in unsuccessful_keys after {sends} sends; the retry budget is spent"
                );
                let keys = body.items().iter().map(B::key);
                report.fail_all(keys.zip(indices.iter().copied()), &reason);
                break;
            }
            tokio::time::sleep(wait).await;
        }
        report
    }

    /// Reads many text values (or JSON, see [`BulkGetOptions`]), 100 keys per request. Keys
    /// that do not exist map to `None`.
    pub async fn bulk_get<I, K>(
        &self,
        keys: I,
        options: BulkGetOptions,
    ) -> Result<HashMap<String, Option<BulkValue>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        for key in &keys {
            check_bulk_key(key)?;
        }
        let mut values = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(limits::BULK_GET_MAX_KEYS) {
            let body = types::BulkGetRequest {
                keys: chunk.to_vec(),
                type_: Some(if options.json {
                    types::BulkGetType::Json
                } else {
                    types::BulkGetType::Text
                }),
                with_metadata: Some(options.with_metadata),
            };
            let get = || {
                Some(
                    self.client()
                        .raw()
                        .bulk_get(self.client().account_id(), self.id(), &body),
                )
            };
            let result = envelope::call(self.client().raw(), self.op("bulk_get"), get)
                .await?
                .into_inner();
            values.extend(bulk_values(result, options.with_metadata));
            for key in chunk {
                values.entry(key.clone()).or_insert(None);
            }
        }
        Ok(values)
    }
}

/// Decodes either result shape. Without `withMetadata` every entry is a plain value, even one
/// that happens to look like the metadata shape.
fn bulk_values(
    result: Option<types::BulkGetResult>,
    with_metadata: bool,
) -> Vec<(String, Option<BulkValue>)> {
    let plain = |value: serde_json::Value| {
        (!value.is_null()).then_some(BulkValue {
            value,
            metadata: None,
            expiration: None,
        })
    };
    match result {
        None => Vec::new(),
        Some(types::BulkGetResult::Values(values)) => values
            .values
            .into_iter()
            .map(|(k, v)| (k, plain(v)))
            .collect(),
        Some(types::BulkGetResult::WithMetadata(entries)) => entries
            .values
            .into_iter()
            .map(|(key, entry)| {
                let value = match entry.0 {
                    None => None,
                    Some(inner) if with_metadata => Some(BulkValue {
                        value: inner.value,
                        metadata: (!inner.metadata.is_null()).then_some(inner.metadata),
                        expiration: inner.expiration,
                    }),
                    Some(inner) => plain(serde_json::to_value(inner).unwrap_or_default()),
                };
                (key, value)
            })
            .collect(),
    }
}
