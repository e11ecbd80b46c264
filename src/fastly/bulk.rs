//! Batch writes through `PUT .../batch` (newline-delimited JSON), written by hand: progenitor
//! does not accept `application/x-ndjson`.
//!
//! Entries are read lazily; each request body is a bounded in-memory chunk (at most
//! [`limits::BATCH_MAX_LINES`] lines and [`BulkOptions::max_request_bytes`], default
//! [`limits::BATCH_DEFAULT_REQUEST_BYTES`]), so memory stays about chunk size × concurrency for
//! any number of entries and a chunk can be sent again. Lines the service rejects come back with
//! the key and the caller's own index: `written + failed.len()` is always the number submitted.

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::{Store, limits, raw::types};
use crate::bulk::{BulkReport, Chunk, FailedKey, chunked, refused};
use crate::error::{Error, InvalidInput, Provider};
use crate::seam;

/// One item to write in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkEntry {
    key: String,
    value: Bytes,
    ttl_seconds: Option<u32>,
    metadata: Option<String>,
    background_fetch: bool,
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
        }
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
        limits::check_key(&self.key)?;
        limits::check_value_len(Some(self.value.len() as u64))?;
        if let Some(metadata) = &self.metadata {
            limits::check_metadata(metadata)?;
        }
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

/// How a batch write runs.
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

/// One line the service did not write, decoded tolerantly: the shape has never been recorded.
struct LineError {
    key: Option<String>,
    index: Option<usize>,
    reason: String,
}

fn line_errors(body: &[u8]) -> Vec<LineError> {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let errors = body
        .get("errors")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default();
    let text = |v: &serde_json::Value, field: &str| match v.get(field) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    errors
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
                key: text(e, "key"),
                index: text(e, "index").and_then(|i| i.parse().ok()),
                reason,
            }
        })
        .collect()
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
        if options.concurrency == 0 {
            return Err(InvalidInput::OutOfRange {
                what: "concurrency",
                allowed: "at least 1",
            }
            .into());
        }
        if options.max_request_bytes < 1024 {
            return Err(InvalidInput::OutOfRange {
                what: "max_request_bytes",
                allowed: "at least 1024",
            }
            .into());
        }
        let max_bytes = options.max_request_bytes;
        let chunks = chunked(
            entries.boxed(),
            limits::BATCH_MAX_LINES,
            max_bytes,
            |index, entry: BulkEntry| {
                let key = entry.key.clone();
                let line = entry.into_line().map_err(|e| refused(&key, index, &e))?;
                if line.len() + 2 > max_bytes {
                    let reason = format!(
                        "the entry alone is {} bytes, over the request bound of {max_bytes}",
                        line.len()
                    );
                    return Err(FailedKey { key, index, reason });
                }
                Ok(((key, line.clone()), line.len()))
            },
        );
        let mut report = BulkReport::default();
        let outcomes = chunks
            .map(|chunk| self.send_batch(chunk))
            .buffer_unordered(options.concurrency);
        let mut outcomes = std::pin::pin!(outcomes);
        while let Some(outcome) = outcomes.next().await {
            report.absorb(outcome);
        }
        Ok(report)
    }

    /// Sends one chunk and reports every line of it.
    async fn send_batch(&self, chunk: Chunk<Vec<(String, Vec<u8>)>>) -> BulkReport {
        let Chunk {
            body: lines,
            indices,
            rejected,
        } = chunk;
        let mut report = BulkReport {
            written: 0,
            failed: rejected,
        };
        if lines.is_empty() {
            return report;
        }
        let body: Bytes = lines
            .iter()
            .flat_map(|(_, line)| line.iter().copied())
            .collect::<Vec<u8>>()
            .into();
        let keys: Vec<String> = lines.into_iter().map(|(key, _)| key).collect();
        let fail_all = |report: &mut BulkReport, reason: String| {
            report.fail_all(
                keys.iter().map(String::as_str).zip(indices.iter().copied()),
                &reason,
            );
        };
        let outcome = async {
            use progenitor_client::{ClientInfo as _, encode_path};
            let raw = self.raw();
            let url = format!(
                "{}/resources/stores/kv/{}/batch",
                raw.baseurl(),
                encode_path(self.id())
            );
            // The chunk is a buffer, so a retry can send it again.
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
            let response = seam::send::<_, (), _>(raw, call, accept, request).await?;
            let status = response.status();
            let answer = response.bytes().await.map_err(|e| {
                Error::transport(Provider::Fastly, "reading the response body failed", e)
            })?;
            Ok::<_, Error>((status, answer))
        };
        let (status, answer) = match outcome.await {
            Ok(answered) => answered,
            Err(error) => {
                fail_all(&mut report, error.to_string());
                return report;
            }
        };
        let errors = line_errors(&answer);
        if errors.is_empty() {
            if status.is_success() {
                report.written += keys.len() as u64;
            } else {
                fail_all(
                    &mut report,
                    seam::from_undecoded_body::<()>(Provider::Fastly, status, &answer, None)
                        .to_string(),
                );
            }
            return report;
        }
        // Attribute each error to its line: by index when it names one in range, else by key.
        let mut failed_lines = vec![None::<String>; keys.len()];
        for error in errors {
            let line = error
                .index
                .filter(|i| *i < keys.len() && error.key.as_ref().is_none_or(|k| *k == keys[*i]))
                .or_else(|| {
                    let key = error.key.as_ref()?;
                    (0..keys.len()).find(|i| keys[*i] == *key && failed_lines[*i].is_none())
                });
            if let Some(line) = line {
                failed_lines[line] = Some(error.reason);
            }
        }
        for ((key, index), reason) in keys.into_iter().zip(indices).zip(failed_lines) {
            match reason {
                Some(reason) => report.failed.push(FailedKey { key, index, reason }),
                None => report.written += 1,
            }
        }
        report
    }
}
