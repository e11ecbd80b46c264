//! [`KvStore`] for a Fastly store: the facade's calls, with what the trait's neutral types mean
//! for the KV Store API.

use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _, TryStreamExt as _};

use super::{BulkEntry, BulkOptions, DeleteOptions, ListKeys, PutOptions, Store, WriteMode};
use crate::body::Body;
use crate::bulk::BulkReport;
use crate::error::{Error, InvalidInput};
use crate::kv::{
    BulkItem, Capabilities, Condition, Entry, KvStore, ListPage, Listed, Metadata, Record, Write,
    unix_now,
};

static CAPABILITIES: LazyLock<Capabilities> = LazyLock::new(Capabilities::fastly);

/// Single reads a bulk read keeps in flight: Fastly has no bulk read, and reads are outside its
/// write budget.
const BULK_GET_CONCURRENCY: usize = 8;

/// The text Fastly keeps, or why this metadata cannot be kept.
fn text_of(metadata: Option<Metadata>) -> Result<Option<String>, InvalidInput> {
    match metadata {
        None => Ok(None),
        Some(Metadata::Text(text)) => Ok(Some(text)),
        Some(Metadata::Json(_)) => Err(crate::kv::MetadataKind::Text.refusal()),
    }
}

/// A batch entry for `item`, or one carrying why it cannot be written.
fn bulk_entry(item: BulkItem, now: i64) -> BulkEntry {
    let write = Write {
        metadata: item.metadata.clone(),
        expiry: item.expiry,
        condition: Condition::Always,
    };
    let checked = CAPABILITIES
        .check_write(&item.key, Some(item.value.len() as u64), &write, now)
        .and_then(|()| CAPABILITIES.ttl_of(item.expiry, now))
        .and_then(|ttl| Ok((ttl, text_of(item.metadata)?)));
    let mut entry = BulkEntry::new(item.key, item.value);
    match checked {
        Err(refused) => entry.refused = Some(refused),
        Ok((ttl, metadata)) => {
            if let Some(ttl) = ttl {
                entry = entry.ttl(ttl);
            }
            if let Some(metadata) = metadata {
                entry = entry.metadata(metadata);
            }
        }
    }
    entry
}

impl KvStore for Store {
    fn capabilities(&self) -> &Capabilities {
        &CAPABILITIES
    }

    fn id(&self) -> String {
        format!("fastly:{}", Store::id(self))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, Error>> {
        async move {
            let Some(item) = Store::get(self, key).await? else {
                return Ok(None);
            };
            Ok(Some(Entry {
                version: Some(item.generation()),
                metadata: item.metadata().map(|m| Metadata::Text(m.to_string())),
                expires_at: None,
                value: item.into_body(),
            }))
        }
        .boxed()
    }

    /// An absolute expiry is sent as the seconds left now (Fastly takes only a time to live).
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Body,
        write: Write,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let now = unix_now();
            CAPABILITIES.check_write(key, value.len(), &write, now)?;
            let mut options = PutOptions::new();
            if let Some(ttl) = CAPABILITIES.ttl_of(write.expiry, now)? {
                options = options.ttl(ttl);
            }
            if let Some(metadata) = text_of(write.metadata)? {
                options = options.metadata(metadata);
            }
            options = match write.condition {
                Condition::Always => options,
                Condition::IfAbsent => options.mode(WriteMode::Add),
                Condition::IfVersion(version) => options.if_generation_match(version),
            };
            Store::put(self, key, value, options).await
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        async move { Store::delete(self, key, DeleteOptions::new()).await }.boxed()
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
                        key,
                        metadata: None,
                        expires_at: None,
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

    /// Single reads, a few at a time: Fastly has no bulk read.
    fn bulk_get<'a>(
        &'a self,
        keys: Vec<String>,
    ) -> BoxFuture<'a, Result<crate::kv::Records, Error>> {
        async move {
            futures_util::stream::iter(keys)
                .map(|key| async move {
                    let record = match KvStore::get(self, &key).await? {
                        Some(entry) => Some(Record {
                            value: entry.value.bytes().await?,
                            metadata: entry.metadata,
                            expires_at: entry.expires_at,
                        }),
                        None => None,
                    };
                    Ok::<_, Error>((key, record))
                })
                .buffered(BULK_GET_CONCURRENCY)
                .try_collect()
                .await
        }
        .boxed()
    }
}
