//! Batch writes through `PUT .../batch` (newline-delimited JSON), written by hand: progenitor
//! does not accept `application/x-ndjson`.
//!
//! Entries are read lazily; each request body is a bounded in-memory chunk (at most
//! [`limits::BATCH_MAX_LINES`] lines and [`BulkOptions::max_request_bytes`], default
//! [`limits::BATCH_DEFAULT_REQUEST_BYTES`]), so memory stays about chunk size × concurrency for
//! any number of entries and a chunk can be sent again. Lines the service rejects come back with
//! the key and the caller's own index: `written + failed.len()` is always the number submitted
//! (`written + deleted + failed.len()` with the deletes, one `DELETE` per key, also here).
//!
//! A line is counted written only when its chunk was answered 2xx and nothing in the answer
//! could be about it. A non-2xx answer, an error the answer does not tie to a line of the
//! request (an index out of range, a key never sent, neither, or both disagreeing), an answer
//! that cannot be read, or a request that got no answer fails every line of the chunk not
//! already failed with its own reason: a line reported failed may have been written, but a line
//! reported written was.

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::{DeleteOptions, ListKeys, Store, limits, raw::types};
use crate::bulk::{self, BulkReport, Chunk, FailedKey, Failure, chunked, clip, refused};
use crate::error::{Error, InvalidInput, Provider};
use crate::transport;

/// One item to write in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkEntry {
    key: String,
    value: Bytes,
    ttl_seconds: Option<u32>,
    metadata: Option<String>,
    background_fetch: bool,
    /// Refused before it reached the call (a `KvStore` write this provider cannot make):
    /// reported under the entry's index, not sent.
    pub(crate) refused: Option<InvalidInput>,
}

impl BulkEntry {
    /// An item with this key and value (any bytes: they travel base64-encoded).
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        BulkEntry {
            key: key.into(),
            value: value.into(),
            ttl_seconds: None,
            metadata: None,
            background_fetch: false,
            refused: None,
        }
    }

    /// Expires the item after `ttl` (whole seconds, rounded up; capped at `u32::MAX` seconds),
    /// as [`PutOptions::ttl`](super::PutOptions::ttl).
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

    /// Store `metadata` with the item (at most 2000 bytes).
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// Let the write complete in the background.
    pub fn background_fetch(mut self, background_fetch: bool) -> Self {
        self.background_fetch = background_fetch;
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The entry's ndjson line (with its newline), after the checks a single write would get.
    fn into_line(self) -> Result<Vec<u8>, InvalidInput> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        let value_len = Some(self.value.len() as u64);
        limits::check_write(&self.key, value_len, self.metadata.as_deref())?;
        let line = types::KvStoreUpsertBatch {
            key: self.key,
            value: base64::engine::general_purpose::STANDARD.encode(&self.value),
            time_to_live_sec: self.ttl_seconds,
            metadata: self.metadata,
            background_fetch: self.background_fetch.then_some(true),
        };
        let mut json = serde_json::to_vec(&line).map_err(|e| InvalidInput::Unbuildable {
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        Ok(json)
    }
}

/// How a bulk call runs: [`Store::bulk_write`] uses both settings, the deletes
/// ([`Store::bulk_delete`], `delete_prefix`, `clear`) only `concurrency`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkOptions {
    /// Requests in flight at once (default 4).
    pub concurrency: usize,
    /// Largest request body, in bytes (default [`limits::BATCH_DEFAULT_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            concurrency: 4,
            max_request_bytes: limits::BATCH_DEFAULT_REQUEST_BYTES,
        }
    }
}

impl BulkOptions {
    /// The options checked before any request, and the concurrency they allow.
    fn check(&self) -> Result<std::num::NonZeroUsize, InvalidInput> {
        let concurrency = bulk::concurrency(self.concurrency)?;
        bulk::check_request_bytes(self.max_request_bytes, usize::MAX, "at least 1024")?;
        Ok(concurrency)
    }
}

setters!(BulkOptions {
    /// Sets [`concurrency`](Self::concurrency): requests in flight at once.
    ///
    /// ```
    /// let options = edgekv::fastly::BulkOptions::default().concurrency(8).max_request_bytes(1 << 20);
    /// assert_eq!(options.concurrency, 8);
    /// ```
    concurrency: usize,
    /// Sets [`max_request_bytes`](Self::max_request_bytes): the largest request body.
    max_request_bytes: usize,
});

/// One error of a batch answer, decoded tolerantly: the shape has never been recorded.
struct LineError {
    /// The 0-based line it names; `Err` when the field is there but is no line number.
    index: Result<Option<usize>, ()>,
    /// The key it names; `Err` when the field is there but is no key.
    key: Result<Option<String>, ()>,
    reason: String,
}

/// The errors of a batch answer, or why the answer cannot be read as one. An empty answer has
/// none.
fn line_errors(body: &[u8]) -> Result<Vec<LineError>, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err("it is not JSON");
    };
    let Some(body) = body.as_object() else {
        return Err("it is not a JSON object");
    };
    let errors = match body.get("errors") {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Array(errors)) => errors,
        Some(_) => return Err("its `errors` is not a list"),
    };
    let text = |v: &serde_json::Value, field: &str| match v.get(field) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let index = |e: &serde_json::Value| match e.get("index") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .map(Some)
            .ok_or(()),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    };
    let key = |e: &serde_json::Value| match e.get("key") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => text(e, "key").map(Some).ok_or(()),
    };
    Ok(errors
        .iter()
        .map(|e| {
            let detail = ["reason", "message", "detail", "title"]
                .iter()
                .find_map(|f| text(e, f));
            let reason = match (text(e, "code"), detail) {
                (Some(code), Some(detail)) => format!("{code}: {detail}"),
                (Some(code), None) => format!("status {code}"),
                (None, Some(detail)) => detail,
                (None, None) => e.to_string(),
            };
            LineError {
                index: index(e),
                key: key(e),
                reason: clip(reason),
            }
        })
        .collect())
}

/// The lines of the request an error is about: the line its index names, when the key it also
/// names (if any) is that line's; or, naming no index, every line with its key. `None` when it
/// names no sent line or contradicts itself: it could then be about any line.
fn attribute(error: &LineError, keys: &[String]) -> Option<Vec<usize>> {
    match (&error.index, &error.key) {
        (Ok(Some(i)), Ok(key))
            if *i < keys.len() && key.as_ref().is_none_or(|k| *k == keys[*i]) =>
        {
            Some(vec![*i])
        }
        (Ok(None), Ok(Some(key))) => {
            let lines: Vec<usize> = (0..keys.len()).filter(|i| keys[*i] == *key).collect();
            (!lines.is_empty()).then_some(lines)
        }
        _ => None,
    }
}

/// What the batch answer says of each line of the request: `None` written, else why not. A line
/// counts as written only when the status is 2xx, the answer reads, no error names it, and no
/// error names something that could be it; every other line gets a reason, the service's own
/// when one names it.
fn account(
    status: reqwest::StatusCode,
    answer: &[u8],
    keys: &[String],
) -> Vec<Option<(String, Failure)>> {
    let mut fate = vec![None::<(String, Failure)>; keys.len()];
    let (errors, unreadable) = match line_errors(answer) {
        Ok(errors) => (errors, None),
        Err(problem) => (Vec::new(), Some(problem)),
    };
    let mut unattributed = Vec::new();
    for error in errors {
        match attribute(&error, keys) {
            Some(lines) => {
                for line in lines {
                    fate[line].get_or_insert_with(|| (error.reason.clone(), Failure::Refused));
                }
            }
            None => unattributed.push(error.reason),
        }
    }
    let rest = if let Some(first) = unattributed.first() {
        let more = match unattributed.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more)"),
        };
        Some(format!(
            "the answer ({status}) has an error that names no line of this request, so no line of \
             it is known to be written: {first}{more}"
        ))
    } else if !status.is_success() {
        let error = transport::from_undecoded_body::<()>(Provider::Fastly, status, answer, None);
        Some(format!(
            "the batch was answered {status} without naming this line, so it is not known to be \
             written: {error}"
        ))
    } else {
        unreadable.map(|problem| {
            format!(
                "the answer ({status}) cannot be read as the batch's ({problem}), so no line of \
                 it is known to be written"
            )
        })
    };
    // A line the answer does not name: refused if the service answered that the request is
    // wrong, not known to be written if the answer says nothing of it or cannot be read.
    let failure = match status.as_u16() {
        400..=499 if !matches!(status.as_u16(), 401 | 403 | 404 | 408 | 429) => Failure::Refused,
        _ => Failure::RequestFailed,
    };
    if let Some(rest) = rest.map(clip) {
        for line in &mut fate {
            line.get_or_insert_with(|| (rest.clone(), failure));
        }
    }
    fate
}

impl Store {
    /// Writes every entry through the batch endpoint. Fails as a whole only for bad options.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// use edgekv::fastly::{BulkEntry, BulkOptions};
    ///
    /// let entries = (0..100_000).map(|i| BulkEntry::new(format!("user/{i}"), "{}").ttl_seconds(86_400));
    /// let report = store.bulk_write(entries, &BulkOptions::default()).await?;
    /// for failed in &report.failed {
    ///     eprintln!("#{} {}: {}", failed.index, failed.key, failed.reason);
    /// }
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
    /// # async fn demo(source: edgekv::fastly::Store, target: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// use edgekv::fastly::{BulkEntry, BulkOptions, ListKeys};
    /// use futures_util::TryStreamExt as _;
    ///
    /// // Every key of one store, with an empty value, into another.
    /// let entries = source.keys(ListKeys::new()).map_ok(|key| BulkEntry::new(key, ""));
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
        crate::keys::check_id(self.id())?;
        let concurrency = options.check()?;
        let max_bytes = options.max_request_bytes;
        let stop = bulk::Stop::default();
        let chunks = chunked(
            bulk::until_error(entries, &stop).boxed(),
            limits::BATCH_MAX_LINES,
            max_bytes,
            |index, entry: BulkEntry| {
                let key = entry.key.clone();
                let line = entry.into_line().map_err(|e| refused(&key, index, &e))?;
                let size = line.len();
                bulk::check_fits(&key, index, size, max_bytes)?;
                Ok(((key, line), size))
            },
        );
        let report = bulk::run(chunks, concurrency, |chunk| self.send_batch(chunk)).await;
        stop.finish(report)
    }

    /// Deletes every key, [`BulkOptions::concurrency`] at a time. Fastly has no bulk delete:
    /// each key is one `DELETE` (a write in Fastly's budget of 1,000 non-read requests per
    /// hour: [`ClientLimit::FASTLY_WRITES`] spaces them), under the handle's retry policy, sent
    /// with `force` so that a key already gone counts in [`BulkReport::deleted`] (it is gone
    /// either way). Each key not deleted is reported. Before the first delete the call asks
    /// once whether the store exists (a read, outside Fastly's write budget), unless a call has
    /// shown it or [`Store::known_to_exist`] states it: a missing store is an error, not a
    /// report of keys deleted.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// let options = edgekv::fastly::BulkOptions::default().concurrency(8);
    /// let report = store.bulk_delete(["session/1", "session/2"], &options).await?;
    /// assert_eq!(report.submitted(), 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`ClientLimit::FASTLY_WRITES`]: crate::policy::ClientLimit::FASTLY_WRITES
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

    /// [`bulk_delete`](Self::bulk_delete) from a stream of keys, read as the deletes go out: at
    /// most [`BulkOptions::concurrency`] keys are held. An error from the stream ends the call
    /// as in [`bulk_write_stream`](Self::bulk_write_stream), after the keys read before it are
    /// deleted.
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
        crate::keys::check_id(self.id())?;
        let concurrency = options.check()?;
        self.confirm_exists().await?;
        self.delete_each(keys, concurrency).await
    }

    /// The deletes of [`bulk_delete_stream`](Self::bulk_delete_stream), the store id and
    /// options checked and the store known to exist.
    async fn delete_each<S, K, E>(
        &self,
        keys: S,
        concurrency: std::num::NonZeroUsize,
    ) -> Result<BulkReport, Error>
    where
        S: Stream<Item = Result<K, E>> + Send,
        K: Into<String> + Send,
        E: Into<Error>,
    {
        let stop = bulk::Stop::default();
        let keys = bulk::until_error(keys, &stop).enumerate();
        let report = bulk::run(keys, concurrency, |(index, key)| {
            self.delete_one(key.into(), index as u64)
        })
        .await;
        stop.finish(report)
    }

    /// Deletes every item whose key starts with `prefix` (every item for `""`), as
    /// [`bulk_delete_stream`](Self::bulk_delete_stream) does, sent as the listing goes: the keys
    /// are never all held. A listing that fails ends the call with its error once the keys
    /// listed before are deleted; the error's [`partial_report`](Error::partial_report) counts
    /// them.
    ///
    /// ```no_run
    /// # async fn demo(store: edgekv::fastly::Store) -> Result<(), edgekv::Error> {
    /// let options = edgekv::fastly::BulkOptions::default().concurrency(8);
    /// let report = store.delete_prefix("session/", &options).await?;
    /// println!("{} deleted, {} failed", report.deleted, report.failed.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_prefix(
        &self,
        prefix: &str,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error> {
        crate::keys::check_id(self.id())?;
        let concurrency = options.check()?;
        let listing = match prefix {
            "" => ListKeys::new(),
            prefix => ListKeys::new().prefix(prefix),
        };
        // No store lookup first: the listing fails on a missing store before any delete.
        self.delete_each(self.keys(listing), concurrency).await
    }

    /// Deletes every item: [`delete_prefix`](Self::delete_prefix) with `""`.
    pub async fn clear(&self, options: &BulkOptions) -> Result<BulkReport, Error> {
        self.delete_prefix("", options).await
    }

    /// One key of a bulk delete, reported.
    async fn delete_one(&self, key: String, index: u64) -> BulkReport {
        match self.delete(&key, DeleteOptions::new().force(true)).await {
            Ok(()) => BulkReport {
                deleted: 1,
                ..BulkReport::default()
            },
            Err(error) => BulkReport {
                failed: vec![FailedKey::new(
                    key,
                    index,
                    error.full_text(),
                    Failure::of(&error),
                )],
                ..BulkReport::default()
            },
        }
    }

    /// Sends one chunk and reports every line of it.
    async fn send_batch(&self, chunk: Chunk<Vec<(String, Vec<u8>)>>) -> BulkReport {
        let (lines, indices, mut report) = chunk.start();
        if lines.is_empty() {
            return report;
        }
        let body: Bytes = lines
            .iter()
            .flat_map(|(_, line)| line.iter().copied())
            .collect::<Vec<u8>>()
            .into();
        let keys: Vec<String> = lines.into_iter().map(|(key, _)| key).collect();
        let fail_all = |report: &mut BulkReport, reason: String, failure: Failure| {
            report.fail_all(
                keys.iter().map(String::as_str).zip(indices.iter().copied()),
                &reason,
                failure,
            );
        };
        let outcome = async {
            use progenitor_client::ClientInfo as _;
            let raw = self.raw();
            let url = format!(
                "{}/resources/stores/kv/{}/batch",
                raw.baseurl(),
                crate::transport::segment::encode(self.id())
            );
            // The chunk is a buffer, so the transport's retries can send it again. Nothing is
            // resent here: the lines an answer fails are reported, not sent again.
            let request = || {
                let request = raw
                    .client()
                    .put(&url)
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-ndjson"),
                    )
                    .body(body.clone())
                    .build()
                    .map_err(|e| {
                        Error::from(InvalidInput::Unbuildable {
                            reason: e.to_string(),
                        })
                    });
                Some(request)
            };
            // Every answer but a retryable one is decoded here: line errors may come with a 4xx.
            let accept = |status: reqwest::StatusCode| !crate::policy::is_retryable_status(status);
            let call = self.op("kv_store_batch");
            transport::send::<_, (), _>(raw, call, accept, request).await
        };
        let (status, answer) = match outcome.await {
            Ok(answered) => answered,
            Err(error) => {
                fail_all(&mut report, clip(error.full_text()), Failure::of(&error));
                return report;
            }
        };
        let fate = account(status, &answer, &keys);
        for ((key, index), reason) in keys.into_iter().zip(indices).zip(fate) {
            match reason {
                Some((reason, failure)) => report
                    .failed
                    .push(FailedKey::new(key, index, reason, failure)),
                None => report.written += 1,
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::json;

    use super::{Failure, account};

    fn keys() -> Vec<String> {
        ["a", "b", "c", "a"].map(String::from).to_vec()
    }

    /// Which lines are written (`true`) after `answer` with `status`.
    fn written(status: u16, answer: serde_json::Value) -> Vec<bool> {
        let status = StatusCode::from_u16(status).unwrap();
        let body = answer.to_string();
        account(status, body.as_bytes(), &keys())
            .iter()
            .map(Option::is_none)
            .collect()
    }

    fn errors(errors: serde_json::Value) -> serde_json::Value {
        json!({"title": "partial", "errors": errors})
    }

    #[test]
    fn a_2xx_answer_without_errors_writes_every_line() {
        assert_eq!(written(200, json!({"errors": []})), [true; 4]);
        assert_eq!(written(200, json!({"title": "success"})), [true; 4]);
        let empty = account(StatusCode::OK, b" \n", &keys());
        assert!(empty.iter().all(Option::is_none));
    }

    #[test]
    fn an_error_naming_a_line_fails_that_line_alone() {
        let by_index = errors(json!([{"index": 1, "reason": "no"}]));
        assert_eq!(written(200, by_index), [true, false, true, true]);
        let by_both = errors(json!([{"index": "2", "key": "c"}]));
        assert_eq!(written(200, by_both), [true, true, false, true]);
        let by_index_of_a_twice_sent_key = errors(json!([{"index": 3, "key": "a"}]));
        assert_eq!(
            written(200, by_index_of_a_twice_sent_key),
            [true, true, true, false]
        );
    }

    #[test]
    fn an_error_naming_only_a_key_fails_every_line_with_it() {
        let by_key = errors(json!([{"key": "a", "code": "400", "reason": "bad"}]));
        assert_eq!(written(200, by_key), [false, true, true, false]);
    }

    #[test]
    fn an_error_that_names_no_sent_line_fails_every_line() {
        for error in [
            json!({"index": 4}),
            json!({"index": 4, "key": "a"}),
            json!({"key": "z"}),
            json!({"code": "500", "reason": "store busy"}),
            json!({"index": -1, "key": "b"}),
            json!({"index": 1.5}),
            json!({"index": "first"}),
            json!({"index": 0, "key": "b"}),
            json!({"index": 1, "key": ["b"]}),
            json!("not an object"),
        ] {
            let answer = errors(json!([{"index": 1, "reason": "own"}, error]));
            assert_eq!(written(200, answer), [false; 4], "{error}");
        }
    }

    #[test]
    fn a_non_2xx_answer_fails_every_line_whatever_it_names() {
        assert_eq!(written(400, errors(json!([{"index": 1}]))), [false; 4]);
        assert_eq!(written(400, errors(json!([]))), [false; 4]);
        assert_eq!(
            written(404, json!({"title": "store not found"})),
            [false; 4]
        );
        let html = account(StatusCode::FORBIDDEN, b"<html>no</html>", &keys());
        assert!(html.iter().all(|r| r.as_ref().unwrap().0.contains("403")));
        // A credential refused may pass on a run again; a request the service calls wrong not.
        assert!(
            html.iter()
                .all(|r| r.as_ref().unwrap().1 == Failure::RequestFailed)
        );
        let blind = account(StatusCode::BAD_REQUEST, b"no", &keys());
        assert!(
            blind
                .iter()
                .all(|r| r.as_ref().unwrap().1 == Failure::Refused)
        );
    }

    #[test]
    fn a_2xx_answer_that_cannot_be_read_fails_every_line() {
        for body in [
            &b"<html>ok</html>"[..],
            b"null",
            b"[]",
            br#"{"errors": "some lines failed"}"#,
            br#"{"errors": {"0": "bad"}}"#,
        ] {
            let fate = account(StatusCode::OK, body, &keys());
            let not_known = |r: &Option<(String, Failure)>| {
                r.as_ref().is_some_and(|r| r.1 == Failure::RequestFailed)
            };
            assert!(fate.iter().all(not_known), "{body:?}");
        }
    }

    #[test]
    fn a_line_keeps_its_own_reason_and_the_others_get_the_servers_message() {
        let answer = errors(json!([
            {"index": 0, "code": "400", "reason": "metadata rejected"},
            {"code": "503", "reason": "shard unavailable"},
        ]));
        let fate = account(StatusCode::OK, answer.to_string().as_bytes(), &keys());
        let named = Some(("400: metadata rejected".to_string(), Failure::Refused));
        assert_eq!(fate[0], named);
        let (rest, failure) = fate[1].clone().unwrap();
        assert!(rest.contains("503: shard unavailable"), "{rest}");
        assert_eq!(failure, Failure::RequestFailed, "not known to be written");
        let status = account(
            StatusCode::BAD_REQUEST,
            answer.to_string().as_bytes(),
            &keys(),
        );
        assert_eq!(status[0], named);
    }

    #[test]
    fn a_huge_reason_is_clipped() {
        let long = "x".repeat(1 << 20);
        let answer = errors(json!([{"reason": long}]));
        let fate = account(StatusCode::OK, answer.to_string().as_bytes(), &keys());
        assert!(
            fate.iter()
                .all(|r| r.as_ref().unwrap().0.len() <= crate::bulk::MAX_REASON_BYTES + 3)
        );
    }
}
