//! Bulk writes, deletes and reads, split to the service's limits without losing a key.
//!
//! Entries are read lazily; each request body is built as a bounded in-memory chunk (at most
//! 10,000 pairs and [`BulkOptions::max_request_bytes`]), so memory stays about chunk size ×
//! concurrency for any number of entries, and a chunk can be sent again. Keys the service lists
//! in `unsuccessful_keys` are sent again after a backoff (the service allows one write per second
//! per key); whatever still fails is reported by key and by the caller's own index:
//! `written + failed.len()` is always the number of entries submitted.
//!
//! Resends and retries do not multiply: a chunk is one call of the transport's attempt loop
//! (`transport::call_until_done`), where a resend of unsuccessful keys is an attempt like a
//! retry, so a chunk makes at most the namespace's `max_attempts` requests, within its deadline.
//!
//! A key is counted written only from a successful answer that holds together. A non-2xx answer,
//! `success: false`, an answer that cannot be read, or no answer fails every key of the request;
//! an answer whose `unsuccessful_keys` names a key not sent, or whose `successful_key_count` is
//! lower than the keys it leaves unlisted, leaves every key of the request unwritten (sent again
//! as listed keys are, then failed): a key reported failed may have been written, but a key
//! reported written was.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt as _, Stream, StreamExt as _, TryStreamExt as _};

use super::envelope;
use super::{ListKeys, Namespace, limits, raw::types};
use crate::bulk::{self, BulkReport, Chunk, FailedKey, Failure, chunked, clip, refused};
use crate::error::{Error, InvalidInput, Secrets};
use crate::transport::{self, Answered};

/// One pair to write.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkEntry {
    key: String,
    value: EntryValue,
    expiration: Option<i64>,
    expiration_ttl: Option<u64>,
    metadata: Option<serde_json::Value>,
    metadata_error: Option<String>,
    /// Refused before it reached the call (a `KvStore` write this provider cannot make):
    /// reported under the entry's index, not sent.
    pub(crate) refused: Option<InvalidInput>,
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
            metadata_error: None,
            refused: None,
        }
    }

    /// Expires the key at `unix_seconds`.
    pub fn expiration(mut self, unix_seconds: i64) -> Self {
        self.expiration = Some(unix_seconds);
        self
    }

    /// Expires the key `ttl` from now (at least 60 seconds; whole seconds, rounded up), as
    /// [`PutOptions::ttl`](super::PutOptions::ttl).
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.expiration_ttl = Some(crate::policy::ttl_seconds(ttl));
        self
    }

    /// Expires the key `seconds` from now (at least 60).
    pub fn expiration_ttl(mut self, seconds: u64) -> Self {
        self.expiration_ttl = Some(seconds);
        self
    }

    /// Stores `metadata` with the key (at most 1024 bytes serialized): anything `Serialize`.
    /// An entry whose metadata cannot be made JSON is reported not written, and not sent.
    pub fn metadata(mut self, metadata: impl serde::Serialize) -> Self {
        (self.metadata, self.metadata_error) = super::handle::to_json(metadata);
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The wire item, after the checks a single write would get. The key travels in JSON, so
    /// URL encoding is no concern; the service still refuses an empty key, `.` and `..`.
    fn into_item(self) -> Result<types::BulkWriteItem, InvalidInput> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        limits::check_key(&self.key, false)?;
        if let Some(reason) = self.metadata_error {
            return Err(InvalidInput::Unbuildable { reason });
        }
        let (value, base64) = match self.value {
            EntryValue::Text(text) => (text, None),
            EntryValue::Bytes(bytes) => (
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                Some(true),
            ),
        };
        let value_len = Some(value.len() as u64);
        let checked = limits::check_write(value_len, self.metadata.as_ref(), self.expiration_ttl)?;
        Ok(types::BulkWriteItem {
            key: self.key,
            value,
            base64,
            expiration: self.expiration,
            expiration_ttl: checked.expiration_ttl,
            metadata: self.metadata,
        })
    }
}

/// A key a bulk delete or get names travels in JSON, not in a URL: any non-empty key within the
/// length limit. (`.` and `..` are not refused here: no such key can be written, so the service
/// finds nothing under them.)
fn check_named_key(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::UnaddressableKey { len: 0 });
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

setters!(BulkOptions {
    /// Sets [`concurrency`](Self::concurrency): requests in flight at once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let options = edgekv::cloudflare::BulkOptions::default()
    ///     .concurrency(2)
    ///     .min_key_interval(Duration::from_secs(2));
    /// assert_eq!(options.concurrency, 2);
    /// ```
    concurrency: usize,
    /// Sets [`max_request_bytes`](Self::max_request_bytes): the largest bulk write body.
    max_request_bytes: usize,
    /// Sets [`min_key_interval`](Self::min_key_interval): the shortest wait before a resend.
    min_key_interval: Duration,
});

setters!(BulkGetOptions {
    /// Sets [`json`](Self::json): parse each value as JSON.
    ///
    /// ```
    /// let options = edgekv::cloudflare::BulkGetOptions::default().json(true).with_metadata(true);
    /// assert!(options.with_metadata);
    /// ```
    json: bool,
    /// Sets [`with_metadata`](Self::with_metadata): each key's metadata and expiration too.
    with_metadata: bool,
});

impl BulkOptions {
    /// The concurrency, once both options are checked.
    fn check(&self) -> Result<NonZeroUsize, InvalidInput> {
        let concurrency = bulk::concurrency(self.concurrency)?;
        let (max, allowed) = (limits::BULK_WRITE_MAX_BYTES, "1024 to 100,000,000");
        bulk::check_request_bytes(self.max_request_bytes, max, allowed)?;
        Ok(concurrency)
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

/// A bulk write or delete's answer, as the generated client returns it.
type BulkAnswer = Result<
    progenitor_client::ResponseValue<types::BulkResultResponse>,
    progenitor_client::Error<types::Failure>,
>;

/// A bulk request body whose items are keyed.
trait BulkBody: Send + Sync + 'static {
    type Item: Clone + Send + Sync;
    const OPERATION: &'static str;
    /// Whether what the service does to an item counts as a delete, not a write.
    const DELETES: bool;
    fn items(&self) -> &[Self::Item];
    fn with_items(items: Vec<Self::Item>) -> Self;
    fn key(item: &Self::Item) -> &str;
    /// The request for `body` (shared, so a resend of what is left copies no unsent item).
    fn send(body: Arc<Self>, namespace: &Namespace) -> BoxFuture<'_, BulkAnswer>;
}

impl BulkBody for types::BulkWrite {
    type Item = types::BulkWriteItem;
    const OPERATION: &'static str = "bulk_write";
    const DELETES: bool = false;
    fn items(&self) -> &[Self::Item] {
        &self.0
    }
    fn with_items(items: Vec<Self::Item>) -> Self {
        types::BulkWrite(items)
    }
    fn key(item: &Self::Item) -> &str {
        &item.key
    }
    fn send(body: Arc<Self>, ns: &Namespace) -> BoxFuture<'_, BulkAnswer> {
        let raw = ns.client().raw();
        async move {
            raw.bulk_write(ns.client().account_id(), ns.id(), &body)
                .await
        }
        .boxed()
    }
}

impl BulkBody for types::BulkDelete {
    type Item = String;
    const OPERATION: &'static str = "bulk_delete";
    const DELETES: bool = true;
    fn items(&self) -> &[Self::Item] {
        &self.0
    }
    fn with_items(items: Vec<Self::Item>) -> Self {
        types::BulkDelete(items)
    }
    fn key(item: &Self::Item) -> &str {
        item
    }
    fn send(body: Arc<Self>, ns: &Namespace) -> BoxFuture<'_, BulkAnswer> {
        let raw = ns.client().raw();
        async move {
            raw.bulk_delete(ns.client().account_id(), ns.id(), &body)
                .await
        }
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
        let entries = entries.into_iter().map(Ok::<_, Error>);
        self.bulk_write_stream(futures_util::stream::iter(entries), options)
            .await
    }

    /// [`bulk_write`](Self::bulk_write) from a stream of entries, read as requests go out: at
    /// most [`BulkOptions::concurrency`] requests' entries are held. An error from the stream
    /// (make your own with [`Error::from_caller`]) stops the reading; the entries read before it
    /// are still sent, and the call ends with that error, whose
    /// [`partial_report`](Error::partial_report) accounts for them.
    ///
    /// ```no_run
    /// # async fn demo(source: edgekv::cloudflare::Namespace, target: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// use edgekv::cloudflare::{BulkEntry, BulkOptions, ListKeys};
    /// use futures_util::TryStreamExt as _;
    ///
    /// // Every key of one namespace, with an empty value, into another.
    /// let entries = source.keys(ListKeys::new()).map_ok(|key| BulkEntry::text(key.name, ""));
    /// let report = target.bulk_write_stream(entries, &BulkOptions::default()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bulk_write_stream<S, E>(
        &self,
        entries: S,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error>
    where
        S: Stream<Item = Result<BulkEntry, E>> + Send,
        E: Into<Error>,
    {
        let concurrency = options.check()?;
        self.check_ids()?;
        let max_bytes = options.max_request_bytes;
        let stop = bulk::Stop::default();
        let chunks = chunked(
            bulk::until_error(entries, &stop).boxed(),
            limits::BULK_WRITE_MAX_PAIRS,
            max_bytes,
            move |index, entry| write_item(index, entry, max_bytes),
        );
        let chunks = chunks.map(|c| c.map_body(types::BulkWrite));
        let report = bulk::run(chunks, concurrency, |chunk| self.send_chunk(chunk, options)).await;
        stop.finish(report)
    }

    /// Deletes every key, in requests of at most 10,000 keys, counted in
    /// [`BulkReport::deleted`] (a key that did not exist counts: it is gone either way).
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
        let keys = keys.into_iter().map(|key| Ok::<String, Error>(key.into()));
        self.bulk_delete_stream(futures_util::stream::iter(keys), options)
            .await
    }

    /// [`bulk_delete`](Self::bulk_delete) from a stream of keys, read as requests go out: at
    /// most a request's 10,000 keys per request in flight are held, however many keys come. An
    /// error from the stream ends the call as in
    /// [`bulk_write_stream`](Self::bulk_write_stream), after the keys read before it are sent.
    pub async fn bulk_delete_stream<S, K, E>(
        &self,
        keys: S,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error>
    where
        S: Stream<Item = Result<K, E>> + Send,
        K: Into<String> + Send,
        E: Into<Error>,
    {
        let concurrency = options.check()?;
        self.check_ids()?;
        let stop = bulk::Stop::default();
        let chunks = chunked(
            bulk::until_error(keys, &stop).boxed(),
            limits::BULK_DELETE_MAX_KEYS,
            usize::MAX,
            |index, key: K| {
                let key = key.into();
                check_named_key(&key).map_err(|e| refused(&key, index, &e))?;
                Ok((key, 0))
            },
        );
        let chunks = chunks.map(|c| c.map_body(types::BulkDelete));
        let report = bulk::run(chunks, concurrency, |chunk| self.send_chunk(chunk, options)).await;
        stop.finish(report)
    }

    /// Deletes every key starting with `prefix` (every key for `""`), in bulk deletes sent as
    /// the listing goes: the keys are never all held, so a namespace of millions clears in
    /// bounded memory. Counted in [`BulkReport::deleted`]. A listing that fails ends the call
    /// with its error once the keys listed before are deleted; the error's
    /// [`partial_report`](Error::partial_report) counts them.
    ///
    /// ```no_run
    /// # async fn demo(namespace: edgekv::cloudflare::Namespace) -> Result<(), edgekv::Error> {
    /// let report = namespace
    ///     .delete_prefix("session/", &edgekv::cloudflare::BulkOptions::default())
    ///     .await?;
    /// println!("{} deleted, {} failed", report.deleted, report.failed.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_prefix(
        &self,
        prefix: &str,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error> {
        let listing = match prefix {
            "" => ListKeys::new(),
            prefix => ListKeys::new().prefix(prefix),
        };
        let keys = self.keys(listing).map_ok(|key| key.name);
        self.bulk_delete_stream(keys, options).await
    }

    /// Deletes every key of the namespace: [`delete_prefix`](Self::delete_prefix) with `""`.
    pub async fn clear(&self, options: &BulkOptions) -> Result<BulkReport, Error> {
        self.delete_prefix("", options).await
    }

    /// Sends one chunk, then again its unsuccessful keys, and reports every key. The resends are
    /// attempts of the transport's one loop (see the module docs): backed off like retries, at
    /// least `min_key_interval` apart, and only while attempts and time are left.
    async fn send_chunk<B: BulkBody>(&self, chunk: Chunk<B>, options: &BulkOptions) -> BulkReport {
        let (body, indices, report) = chunk.start();
        if body.items().is_empty() {
            // Every entry of the chunk was refused before sending: there is no request to make.
            return report;
        }
        // What is still to send, shared by the request builder and the answer reader.
        let pending = std::sync::Mutex::new(Pending {
            body: Arc::new(body),
            indices,
            report,
            sends: 0,
            why: "",
        });
        let lock = || {
            pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let make = || {
            let body = {
                let mut pending = lock();
                pending.sends += 1;
                Arc::clone(&pending.body)
            };
            Some(B::send(body, self))
        };
        let answered = |response: progenitor_client::ResponseValue<types::BulkResultResponse>| {
            let status = response.status();
            let reply = envelope::unwrap(self.client().transport(), status, response.into_inner());
            let result = match reply {
                Ok(reply) => reply.into_inner(),
                Err(error) => return Answered::Done(Err(error)),
            };
            let mut pending = lock();
            let pending = &mut *pending;
            let sent = pending.body.items();
            let (unsuccessful, why) = left_unwritten(result, sent.iter().map(B::key));
            let mut keep = Vec::with_capacity(unsuccessful.len());
            let mut kept_indices = Vec::with_capacity(unsuccessful.len());
            for (item, index) in sent.iter().zip(&pending.indices) {
                if unsuccessful.contains(B::key(item)) {
                    keep.push(item.clone());
                    kept_indices.push(*index);
                }
            }
            let done = (sent.len() - keep.len()) as u64;
            if B::DELETES {
                pending.report.deleted += done;
            } else {
                pending.report.written += done;
            }
            pending.body = Arc::new(B::with_items(keep));
            pending.indices = kept_indices;
            pending.why = why;
            if pending.body.items().is_empty() {
                Answered::Done(Ok(()))
            } else {
                Answered::SendAgain(Ok(()), options.min_key_interval)
            }
        };
        let call = self.op(B::OPERATION);
        let outcome = transport::call_until_done(self.client().transport(), call, make, answered)
            .await
            .and_then(|answered| answered);
        let Pending {
            body,
            indices,
            mut report,
            sends,
            why,
        } = pending
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (reason, failure) = match outcome {
            Ok(()) if body.items().is_empty() => return report,
            Ok(()) => (
                format!("{why} after {sends} sends; the retry budget is spent"),
                Failure::RequestFailed,
            ),
            Err(error) => (clip(error.full_text()), Failure::of(&error)),
        };
        let keys = body.items().iter().map(B::key);
        report.fail_all(keys.zip(indices.iter().copied()), &reason, failure);
        report
    }

    /// Reads many text values (or JSON, see [`BulkGetOptions`]), 100 keys per request. Keys
    /// that do not exist map to `None`; the map holds exactly the keys asked for. A request
    /// whose answer is over [`ReadLimits::bulk`](crate::policy::ReadLimits::bulk) is split in
    /// halves and sent again, down to single keys; only a single key whose answer is still over
    /// it fails the call.
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
            check_named_key(key)?;
        }
        let mut values = HashMap::with_capacity(keys.len());
        // Requests still to make, each a run of `keys`: 100 keys at most, and halved when its
        // answer is over `ReadLimits::bulk_get`, down to a single key. A half is a smaller
        // request, not a retry of the same one: each is its own call, retried by the transport.
        let mut pending: Vec<&[String]> = keys.chunks(limits::BULK_GET_MAX_KEYS).rev().collect();
        while let Some(part) = pending.pop() {
            let result = match self.bulk_get_once(part, options).await {
                Ok(result) => result,
                Err(error) if error.is_answer_too_large() && part.len() > 1 => {
                    let (first, second) = part.split_at(part.len() / 2);
                    pending.push(second);
                    pending.push(first);
                    continue;
                }
                Err(error) => {
                    let secrets = part
                        .iter()
                        .fold(Secrets::new(), |s, key| s.with(key.as_bytes(), "<key>"));
                    return Err(error.redact(&secrets));
                }
            };
            // A value under a key this request did not ask for answers nothing: it is dropped.
            let asked: HashSet<&str> = part.iter().map(String::as_str).collect();
            let answered = bulk_values(result, options.with_metadata)
                .into_iter()
                .filter(|(key, _)| asked.contains(key.as_str()));
            values.extend(answered);
            for key in part {
                values.entry(key.clone()).or_insert(None);
            }
        }
        Ok(values)
    }

    /// One bulk get request for `keys` (at most 100).
    async fn bulk_get_once(
        &self,
        keys: &[String],
        options: BulkGetOptions,
    ) -> Result<Option<types::BulkGetResult>, Error> {
        let body = types::BulkGetRequest {
            keys: keys.to_vec(),
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
        let reply = envelope::call(self.client().raw(), self.op("bulk_get"), get).await?;
        Ok(reply.into_inner())
    }
}

/// A bulk write entry as its chunk carries it: the wire item and its share of the body (its JSON
/// and a separating comma), or why it is refused before sending.
fn write_item(
    index: u64,
    entry: BulkEntry,
    max_bytes: usize,
) -> Result<(types::BulkWriteItem, usize), FailedKey> {
    let key = entry.key.clone();
    let item = entry.into_item().map_err(|e| refused(&key, index, &e))?;
    let size = serde_json::to_vec(&item)
        .map(|v| v.len() + 1)
        .unwrap_or(usize::MAX);
    bulk::check_fits(&key, index, size, max_bytes)?;
    Ok((item, size))
}

/// The keys of a request a bulk answer leaves unwritten, and why, from the keys sent. The
/// listed keys, when the answer holds together; every key sent when it does not (it lists a key
/// that was not sent, or counts fewer keys written than it leaves unlisted), since which were
/// written is then unknown. No result at all (as older answers have) means every key was.
fn left_unwritten<'k>(
    result: Option<types::BulkResult>,
    sent: impl Iterator<Item = &'k str>,
) -> (HashSet<String>, &'static str) {
    let sent: HashSet<&str> = sent.collect();
    let Some(result) = result else {
        return (HashSet::new(), "");
    };
    let listed: HashSet<String> = result.unsuccessful_keys.into_iter().collect();
    let everything = || sent.iter().map(|k| k.to_string()).collect();
    if listed.iter().any(|k| !sent.contains(k.as_str())) {
        let why = "the answer lists in unsuccessful_keys a key not sent in the request, so no key \
                   of it is known written";
        return (everything(), why);
    }
    let unlisted = sent.iter().filter(|k| !listed.contains(**k)).count() as u64;
    if result.successful_key_count.is_some_and(|n| n < unlisted) {
        let why = "the answer counts fewer keys written than it leaves out of unsuccessful_keys, \
                   so no key of it is known written";
        return (everything(), why);
    }
    (listed, "listed in unsuccessful_keys")
}

/// A chunk's keys not yet written, and what became of the others.
struct Pending<B> {
    body: Arc<B>,
    indices: Vec<u64>,
    report: BulkReport,
    sends: u32,
    why: &'static str,
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use futures_util::StreamExt as _;

    use super::{BulkEntry, check_named_key, left_unwritten, types, write_item};
    use crate::bulk::chunked;
    use crate::error::InvalidInput;

    #[test]
    fn a_bulk_write_refuses_the_keys_the_service_refuses() {
        // "A key cannot be empty, have a . or .." (Cloudflare's KV docs; specs/README.md).
        for (key, len) in [("", 0), (".", 1), ("..", 2)] {
            let refused = BulkEntry::text(key, "v").into_item().unwrap_err();
            assert_eq!(refused, InvalidInput::UnaddressableKey { len }, "{key:?}");
        }
        for key in ["...", ".a", "a.", "a/../b", "./"] {
            assert!(BulkEntry::text(key, "v").into_item().is_ok(), "{key:?}");
        }
    }

    #[tokio::test]
    async fn dot_keys_are_reported_not_written_and_never_sent() {
        let entries = ["a", ".", "b", "..", "c"].map(|k| BulkEntry::text(k, "v"));
        let entries = futures_util::stream::iter(entries).boxed();
        let chunks: Vec<_> = chunked(entries, 10, 1024, |index, entry| {
            write_item(index, entry, 1024)
        })
        .collect()
        .await;
        assert_eq!(chunks.len(), 1);
        let sent: Vec<&str> = chunks[0]
            .body
            .iter()
            .map(|item| item.key.as_str())
            .collect();
        assert_eq!(sent, ["a", "b", "c"]);
        assert_eq!(chunks[0].indices, [0, 2, 4]);
        let refused: Vec<(&str, u64)> = chunks[0]
            .rejected
            .iter()
            .map(|f| (f.key.as_str(), f.index))
            .collect();
        assert_eq!(refused, [(".", 1), ("..", 3)]);
        assert!(
            chunks[0].rejected[0]
                .reason
                .starts_with("refused before sending:")
        );
    }

    #[test]
    fn a_bulk_delete_or_get_still_names_dot_keys() {
        // No such key can be written, so the service just finds nothing under it.
        assert!(check_named_key(".").is_ok());
        assert!(check_named_key("..").is_ok());
        assert_eq!(
            check_named_key(""),
            Err(InvalidInput::UnaddressableKey { len: 0 })
        );
    }

    const SENT: [&str; 3] = ["a", "b", "c"];

    fn unwritten(count: Option<u64>, listed: &[&str]) -> HashSet<String> {
        let result = types::BulkResult {
            successful_key_count: count,
            unsuccessful_keys: listed.iter().map(|k| k.to_string()).collect(),
        };
        left_unwritten(Some(result), SENT.into_iter()).0
    }

    fn set(keys: &[&str]) -> HashSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn an_answer_that_holds_together_leaves_its_listed_keys() {
        assert_eq!(unwritten(Some(3), &[]), set(&[]));
        assert_eq!(unwritten(Some(2), &["b"]), set(&["b"]));
        assert_eq!(unwritten(None, &["b", "b"]), set(&["b"]));
        assert_eq!(left_unwritten(None, SENT.into_iter()).0, set(&[]));
    }

    #[test]
    fn an_answer_that_lists_a_key_never_sent_leaves_every_key() {
        assert_eq!(unwritten(Some(2), &["z"]), set(&SENT));
        assert_eq!(unwritten(None, &["b", "B"]), set(&SENT));
    }

    #[test]
    fn an_answer_counting_fewer_written_than_unlisted_leaves_every_key() {
        assert_eq!(unwritten(Some(0), &[]), set(&SENT));
        assert_eq!(unwritten(Some(1), &["a"]), set(&SENT));
    }
}
