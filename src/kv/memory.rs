//! An in-process [`KvStore`] that keeps a provider's rules: a test double that refuses what the
//! real service refuses.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt as _, StreamExt as _};

use super::{
    BulkItem, Capabilities, Condition, Entry, KvStore, ListPage, Listed, Record, Write, unix_now,
};
use crate::body::{Body, ValueStream};
use crate::bulk::{BulkReport, FailedKey};
use crate::error::Error;

/// Keys a listing page holds, as the services' default page.
const PAGE_KEYS: usize = 1000;

/// An in-memory store with the limits and features of a provider's [`Capabilities`]:
/// `MemoryStore::new(Capabilities::cloudflare())` refuses a 513-byte key, a text metadata or a
/// conditional write as Cloudflare would; `Capabilities::fastly()` keeps versions and takes
/// conditions. Expiry follows the system clock moved by [`advance`](Self::advance). Listings
/// are in key order, whatever the profile.
pub struct MemoryStore {
    capabilities: Capabilities,
    /// Tells stores apart in a job's journal (memory is not kept across runs anyway).
    id: u64,
    entries: Mutex<BTreeMap<String, Stored>>,
    /// Seconds added to the system clock.
    offset: AtomicI64,
    /// The last version given (Fastly-like profiles).
    version: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Stored {
    value: Bytes,
    metadata: Option<super::Metadata>,
    expires_at: Option<i64>,
    version: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("provider", &self.capabilities.provider)
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store with `capabilities`' rules.
    pub fn new(capabilities: Capabilities) -> Self {
        MemoryStore {
            capabilities,
            id: fastrand::u64(..),
            entries: Mutex::default(),
            offset: AtomicI64::new(0),
            version: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves the store's clock forward by `by` (whole seconds), so expiry is tested without
    /// waiting.
    pub fn advance(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let _ = self
            .offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(seconds))
            });
    }

    /// The store's now, in UNIX seconds.
    pub fn now(&self) -> i64 {
        unix_now().saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// How many live entries the store holds.
    pub fn len(&self) -> usize {
        let now = self.now();
        self.lock().values().filter(|s| live(s, now)).count()
    }

    /// Whether the store holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stored>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next_version(&self) -> u64 {
        self.version
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Writes `value` under `key` once `write` is checked, as the provider would.
    fn write(&self, key: &str, value: Bytes, write: &Write) -> Result<(), Error> {
        let now = self.now();
        let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
        self.capabilities.check_write(key, Some(len), write, now)?;
        let ttl = self.capabilities.ttl_of(write.expiry, now)?;
        let expires_at = ttl.map(|ttl| {
            let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            now.saturating_add(seconds)
        });
        let mut entries = self.lock();
        let current = entries.get(key).filter(|s| live(s, now));
        let holds = match write.condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfVersion(version) => current.is_some_and(|s| s.version == version),
        };
        if !holds {
            return Err(precondition_failed(self.capabilities.provider));
        }
        let stored = Stored {
            value,
            metadata: write.metadata.clone(),
            expires_at,
            version: self.next_version(),
        };
        entries.insert(key.to_string(), stored);
        Ok(())
    }

    fn read(&self, key: &str) -> Result<Option<Stored>, Error> {
        self.capabilities.check_key(key)?;
        let now = self.now();
        Ok(self.lock().get(key).filter(|s| live(s, now)).cloned())
    }

    fn remove(&self, key: &str) -> Result<(), Error> {
        self.capabilities.check_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    /// The page of keys under `prefix` after `cursor` (the last key of the page before).
    fn page(&self, prefix: &str, cursor: Option<&str>) -> ListPage {
        let now = self.now();
        let entries = self.lock();
        let start = match cursor {
            Some(after) => std::ops::Bound::Excluded(after.to_string()),
            None => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut keys: Vec<Listed> = entries
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, stored)| live(stored, now))
            .take(PAGE_KEYS + 1)
            .map(|(key, stored)| Listed {
                key: key.clone(),
                metadata: self
                    .capabilities
                    .lists_metadata
                    .then(|| stored.metadata.clone())
                    .flatten(),
                expires_at: self
                    .capabilities
                    .lists_metadata
                    .then_some(stored.expires_at)
                    .flatten(),
            })
            .collect();
        let more = keys.len() > PAGE_KEYS;
        keys.truncate(PAGE_KEYS);
        let cursor = more.then(|| keys.last().map(|k| k.key.clone())).flatten();
        ListPage { keys, cursor }
    }

    fn entry(&self, stored: Stored) -> Entry {
        let capabilities = &self.capabilities;
        Entry {
            value: ValueStream::from_bytes(capabilities.provider, stored.value),
            metadata: stored.metadata,
            expires_at: stored.expires_at.filter(|_| capabilities.reads_expiry),
            version: capabilities.versions.then_some(stored.version),
        }
    }
}

fn live(stored: &Stored, now: i64) -> bool {
    stored.expires_at.is_none_or(|at| at > now)
}

/// What the provider answers to a condition that does not hold: 412.
fn precondition_failed(provider: crate::Provider) -> Error {
    let status = reqwest::StatusCode::PRECONDITION_FAILED;
    Error::Api(crate::error::ApiError::new(
        provider,
        status,
        Vec::new(),
        Vec::new(),
        None,
    ))
}

impl KvStore for MemoryStore {
    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn id(&self) -> String {
        format!("memory:{:016x}", self.id)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>, Error>> {
        async move { Ok(self.read(key)?.map(|stored| self.entry(stored))) }.boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Body,
        write: Write,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let now = self.now();
            // Checked before the value is read: a value too large is refused unread.
            self.capabilities
                .check_write(key, value.len(), &write, now)?;
            let max = self.capabilities.max_value_bytes;
            let value = value.collect(max).await?;
            self.write(key, value, &write)
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        async move { self.remove(key) }.boxed()
    }

    fn list(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> BoxStream<'static, Result<ListPage, Error>> {
        // A snapshot of the pages now: the store is in memory, so a listing is cheap.
        let mut pages = Vec::new();
        let mut cursor = cursor;
        loop {
            let page = self.page(prefix, cursor.as_deref());
            cursor = page.cursor.clone();
            pages.push(Ok(page));
            if cursor.is_none() {
                break;
            }
        }
        futures_util::stream::iter(pages).boxed()
    }

    fn bulk_put<'a>(
        &'a self,
        entries: BoxStream<'a, Result<BulkItem, Error>>,
        _concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>> {
        async move {
            let mut report = BulkReport::default();
            let mut entries = entries.enumerate();
            while let Some((index, item)) = entries.next().await {
                let item = match item {
                    Ok(item) => item,
                    Err(error) => return Err(error.with_partial(report)),
                };
                let write = Write {
                    metadata: item.metadata,
                    expiry: item.expiry,
                    condition: Condition::Always,
                };
                match self.write(&item.key, item.value, &write) {
                    Ok(()) => report.written += 1,
                    Err(error) => report.failed.push(failed(item.key, index, &error)),
                }
            }
            Ok(report)
        }
        .boxed()
    }

    fn bulk_delete<'a>(
        &'a self,
        keys: BoxStream<'a, Result<String, Error>>,
        _concurrency: usize,
    ) -> BoxFuture<'a, Result<BulkReport, Error>> {
        async move {
            let mut report = BulkReport::default();
            let mut keys = keys.enumerate();
            while let Some((index, key)) = keys.next().await {
                let key = match key {
                    Ok(key) => key,
                    Err(error) => return Err(error.with_partial(report)),
                };
                match self.remove(&key) {
                    Ok(()) => report.deleted += 1,
                    Err(error) => report.failed.push(failed(key, index, &error)),
                }
            }
            Ok(report)
        }
        .boxed()
    }

    fn bulk_get<'a>(
        &'a self,
        keys: Vec<String>,
    ) -> BoxFuture<'a, Result<crate::kv::Records, Error>> {
        async move {
            let mut records = Vec::with_capacity(keys.len());
            for key in keys {
                let record = self.read(&key)?.map(|stored| Record {
                    value: stored.value,
                    metadata: stored.metadata,
                    expires_at: stored.expires_at.filter(|_| self.capabilities.reads_expiry),
                });
                records.push((key, record));
            }
            Ok(records)
        }
        .boxed()
    }
}

fn failed(key: String, index: usize, error: &Error) -> FailedKey {
    FailedKey::new(
        key,
        index as u64,
        error.full_text(),
        crate::bulk::Failure::of(error),
    )
}
