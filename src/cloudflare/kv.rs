//! [`KvStore`] for a Cloudflare namespace: the facade's calls, with what the trait's neutral
//! types mean for Workers KV.

use std::sync::LazyLock;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _, TryStreamExt as _};

use super::{BulkEntry, BulkGetOptions, BulkOptions, ListKeys, Namespace, PutOptions};
use crate::body::Body;
use crate::bulk::BulkReport;
use crate::error::{Error, InvalidInput};
use crate::kv::{
    BulkItem, Capabilities, Entry, Expiry, KvStore, ListPage, Listed, Metadata, Record, Write,
    unix_now,
};

static CAPABILITIES: LazyLock<Capabilities> = LazyLock::new(Capabilities::cloudflare);

/// Values a bulk read re-reads alone at once (those it could not give byte-exact).
const REREAD_CONCURRENCY: usize = 8;

/// The JSON Cloudflare keeps, or why this metadata cannot be kept.
fn json_of(metadata: Option<Metadata>) -> Result<Option<serde_json::Value>, InvalidInput> {
    match metadata {
        None => Ok(None),
        Some(Metadata::Json(json)) => Ok(Some(json)),
        Some(Metadata::Text(_)) => Err(crate::kv::MetadataKind::Json.refusal()),
    }
}

/// An expiry as Cloudflare takes it: absolute, or a time to live.
fn expire(expiry: Expiry) -> (Option<i64>, Option<std::time::Duration>) {
    match expiry {
        Expiry::Never => (None, None),
        Expiry::At(at) => (Some(at), None),
        Expiry::After(ttl) => (None, Some(ttl)),
    }
}

/// A bulk entry for `item`, or one carrying why it cannot be written.
fn bulk_entry(item: BulkItem, now: i64) -> BulkEntry {
    let checked = CAPABILITIES
        .check_write(
            &item.key,
            Some(item.value.len() as u64),
            &write_of(&item),
            now,
        )
        .and_then(|()| json_of(item.metadata));
    let mut entry = BulkEntry::bytes(item.key, item.value);
    match checked {
        Err(refused) => entry.refused = Some(refused),
        Ok(metadata) => {
            if let Some(metadata) = metadata {
                entry = entry.metadata(metadata);
            }
            match expire(item.expiry) {
                (Some(at), _) => entry = entry.expiration(at),
                (_, Some(ttl)) => entry = entry.ttl(ttl),
                _ => {}
            }
        }
    }
    entry
}

fn write_of(item: &BulkItem) -> Write {
    Write {
        metadata: item.metadata.clone(),
        expiry: item.expiry,
        condition: crate::kv::Condition::Always,
    }
}

impl KvStore for Namespace {
    fn capabilities(&self) -> &Capabilities {
        &CAPABILITIES
    }

    fn id(&self) -> String {
        format!("cloudflare:{}/{}", self.client().account_id(), self.id())
    }

    /// The value's read, then the metadata's (Cloudflare serves them apart): two requests for
    /// a key that exists, one for a key that does not.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, Error>> {
        async move {
            let Some(value) = Namespace::get(self, key).await? else {
                return Ok(None);
            };
            // The metadata endpoint answers `null` for a key without any, as the listing and
            // the bulk read leave it out: `None` all the same.
            let metadata = self
                .metadata(key)
                .await?
                .filter(|json| !json.is_null())
                .map(Metadata::Json);
            Ok(Some(Entry {
                expires_at: value.expiration(),
                value: value.into_body(),
                metadata,
                version: None,
            }))
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Body,
        write: Write,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            CAPABILITIES.check_write(key, value.len(), &write, unix_now())?;
            let mut options = PutOptions::new();
            if let Some(metadata) = json_of(write.metadata)? {
                options = options.metadata(metadata);
            }
            match expire(write.expiry) {
                (Some(at), _) => options = options.expiration(at),
                (_, Some(ttl)) => options = options.ttl(ttl),
                _ => {}
            }
            Namespace::put(self, key, value, options).await.map(drop)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        async move { Namespace::delete(self, key).await.map(drop) }.boxed()
    }

    fn list(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> BoxStream<'static, Result<ListPage, Error>> {
        let mut options = ListKeys::new();
        if !prefix.is_empty() {
            options = options.prefix(prefix);
        }
        if let Some(cursor) = cursor {
            options = options.cursor(cursor);
        }
        self.key_pages(options)
            .map_ok(|page| ListPage {
                keys: page
                    .keys
                    .into_iter()
                    .map(|key| Listed {
                        key: key.name,
                        metadata: key.metadata.map(Metadata::Json),
                        expires_at: key.expiration,
                    })
                    .collect(),
                cursor: page.cursor,
            })
            .boxed()
    }

    fn bulk_put<'a>(
        &'a self,
        entries: BoxStream<'a, Result<BulkItem, Error>>,
        concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>> {
        async move {
            let now = unix_now();
            let entries = entries.map_ok(move |item| bulk_entry(item, now));
            let options = BulkOptions::default().concurrency(concurrency);
            self.bulk_write_stream(entries, &options).await
        }
        .boxed()
    }

    fn bulk_delete<'a>(
        &'a self,
        keys: BoxStream<'a, Result<String, Error>>,
        concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>> {
        async move {
            let options = BulkOptions::default().concurrency(concurrency);
            self.bulk_delete_stream(keys, &options).await
        }
        .boxed()
    }

    /// Cloudflare's bulk read, documented for text: a value it returns with U+FFFD (what a
    /// value that is not UTF-8 becomes there) is read again alone, so every value is
    /// byte-exact.
    fn bulk_get<'a>(
        &'a self,
        keys: Vec<String>,
    ) -> BoxFuture<'a, Result<crate::kv::Records, Error>> {
        async move {
            let options = BulkGetOptions {
                json: false,
                with_metadata: true,
            };
            let found = Namespace::bulk_get(self, keys.iter().cloned(), options).await?;
            // Each key's record, or the metadata and expiry of one whose value must be read
            // alone: the bulk read gave it as text with U+FFFD.
            let read = |key: String| {
                // `get`, not `remove`: a key asked twice is answered twice.
                let Some(Some(read)) = found.get(&key).cloned() else {
                    return (key, Ok(None));
                };
                let metadata = read.metadata.filter(|m| !m.is_null()).map(Metadata::Json);
                match read.value {
                    serde_json::Value::String(text) if !text.contains('\u{FFFD}') => {
                        let record = Record {
                            value: Bytes::from(text),
                            metadata,
                            expires_at: read.expiration,
                        };
                        (key, Ok(Some(record)))
                    }
                    _ => (key, Err(metadata)),
                }
            };
            let records = futures_util::stream::iter(keys.into_iter().map(read))
                .map(|(key, record)| async move {
                    let record = match record {
                        Ok(record) => record,
                        // The value alone (with its expiry); the metadata came with the bulk
                        // read.
                        Err(metadata) => match Namespace::get(self, &key).await? {
                            Some(value) => Some(Record {
                                expires_at: value.expiration(),
                                value: value.bytes().await?,
                                metadata,
                            }),
                            None => None,
                        },
                    };
                    Ok::<_, Error>((key, record))
                })
                .buffered(REREAD_CONCURRENCY)
                .try_collect()
                .await?;
            Ok(records)
        }
        .boxed()
    }
}
