//! Fastly KV Store: stores, items with generations and metadata, key listings, batch writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), edgekv::Error> {
//! use edgekv::fastly::{Client, PutOptions, WriteMode};
//!
//! let client = Client::from_env()?; // FASTLY_API_TOKEN
//! let store = client.store("iaa48y0oxw13s12xpfdkk9");
//! store.put("apple", "apple0", PutOptions::new()).await?;
//! if let Some(item) = store.get("apple").await? {
//!     let generation = item.generation();
//!     // Only succeeds if nobody wrote in between; a conflict is `is_precondition_failed()`.
//!     let options = PutOptions::new().if_generation_match(generation).mode(WriteMode::Append);
//!     store.put("apple", "-suffix", options).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod bulk;
mod handle;
mod kv;
pub mod limits;
pub mod raw;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use futures_util::stream::BoxStream;

pub use crate::bulk::{BulkReport, FailedKey, Failure};
pub use bulk::{BulkEntry, BulkOptions};
pub use handle::{
    Consistency, DeleteOptions, Item, KeyPage, ListKeys, PutOptions, Store, WriteMode,
};

use crate::builder::Settings;
use crate::error::{Error, InvalidInput, Provider};
use crate::paging;
use crate::policy::RequestPolicy;
use crate::transport::{self, Call, Credential, Transport};

/// Where the API lives unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.fastly.com";

/// A Fastly KV Store client. Cheap to clone; `Debug` shows no token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    raw: raw::Client,
    /// The stores some call has shown to exist, shared by every handle of the client (see
    /// [`Client::store`]).
    existing: std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicBool>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use progenitor_client::ClientInfo as _;
        f.debug_struct("fastly::Client")
            .field("base_url", &self.inner.raw.baseurl())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    settings: Settings,
}

impl ClientBuilder {
    /// Sends requests under `policy` (retries, timeouts, a client-side limit) instead of the
    /// defaults; see [`crate::policy`].
    pub fn policy(mut self, policy: RequestPolicy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Sends requests to `base_url` instead of [`DEFAULT_BASE_URL`] (an emulator, a proxy).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.settings.base_url = base_url.into();
        self
    }

    /// Sends requests through this `reqwest::Client`. Give it a redirect policy that does not
    /// follow redirects to other hosts: reqwest would forward `Fastly-Key` to them.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.settings.http = Some(http);
        self
    }

    /// Builds the client. Fails if the token cannot be sent as a header value.
    pub fn build(self) -> Result<Client, Error> {
        let (transport, http, base_url) = self.settings.build(Provider::Fastly)?;
        let raw = raw::Client::new_with_client(&base_url, http, transport);
        Ok(Client {
            inner: Arc::new(Inner {
                raw,
                existing: Default::default(),
            }),
        })
    }
}

/// A call of this provider's `operation`.
pub(crate) fn op(operation: &'static str) -> Call<'static> {
    Call::new(Provider::Fastly, raw::OPERATIONS, operation)
}

/// Where a store's primary copy lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// United States.
    Us,
    /// Europe.
    Eu,
    /// Asia.
    Asia,
    /// Australia.
    Aus,
}

impl From<Location> for raw::types::KvStoreLocation {
    fn from(location: Location) -> Self {
        match location {
            Location::Us => raw::types::KvStoreLocation::Us,
            Location::Eu => raw::types::KvStoreLocation::Eu,
            Location::Asia => raw::types::KvStoreLocation::Asia,
            Location::Aus => raw::types::KvStoreLocation::Aus,
        }
    }
}

/// A store's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreInfo {
    /// Store ID.
    pub id: String,
    /// Store name.
    pub name: String,
    /// Creation time, as the service wrote it (two formats are seen live).
    pub created_at: Option<String>,
    /// Last update time, as the service wrote it.
    pub updated_at: Option<String>,
}

impl From<raw::types::KvStoreDetails> for StoreInfo {
    fn from(d: raw::types::KvStoreDetails) -> Self {
        StoreInfo {
            id: d.id.unwrap_or_default(),
            name: d.name.unwrap_or_default(),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// Options of [`Client::stores`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListStores {
    /// Only the store with this name.
    pub name: Option<String>,
    /// Stores per page (the service's default: 1000).
    pub limit: Option<u32>,
}

setters!(ListStores {
    /// Sets [`name`](Self::name): only the store with this name.
    ///
    /// ```
    /// let options = edgekv::fastly::ListStores::default().name(Some("sessions".into())).limit(Some(100));
    /// assert_eq!(options.limit, Some(100));
    /// ```
    name: Option<String>,
    /// Sets [`limit`](Self::limit): stores per page.
    limit: Option<u32>,
});

impl Client {
    /// A client authenticated with an API token (sent as `Fastly-Key`).
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), edgekv::Error> {
    /// let client = edgekv::fastly::Client::new("api-token")?;
    /// let store = client.store("iaa48y0oxw13s12xpfdkk9");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(api_token: impl Into<String>) -> Result<Self, Error> {
        Self::builder(api_token).build()
    }

    /// A builder, for another base URL, a policy or an existing `reqwest::Client`. The same
    /// shape as [`cloudflare::Client::builder`](crate::cloudflare::Client::builder), which adds
    /// the account.
    pub fn builder(api_token: impl Into<String>) -> ClientBuilder {
        let token = Credential::FastlyToken(api_token.into());
        ClientBuilder {
            settings: Settings::new(token, DEFAULT_BASE_URL),
        }
    }

    /// A client from the variables Fastly's own tools read: `FASTLY_API_TOKEN`, and
    /// `FASTLY_API_URL` when set (as go-fastly reads it), so a service can be pointed at a local
    /// `edgekv-emulator` without a code change.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `var`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let token = var("FASTLY_API_TOKEN").ok_or_else(|| InvalidInput::Missing {
            what: "environment variable FASTLY_API_TOKEN".to_string(),
        })?;
        let mut builder = Self::builder(token);
        if let Some(base_url) = var("FASTLY_API_URL") {
            builder = builder.base_url(base_url);
        }
        builder.build()
    }

    pub(crate) fn transport(&self) -> &Transport {
        use progenitor_client::ClientInfo as _;
        self.inner.raw.inner()
    }

    /// What the service said about its rate limit on the latest answer that told (Fastly's
    /// `Fastly-RateLimit-Remaining` and `-Reset` headers).
    pub fn rate_limit(&self) -> Option<crate::policy::RateLimit> {
        self.transport().rate_limit()
    }

    /// The generated client underneath, for calls the facade does not cover. Outside the
    /// crate's semver promise, like everything in [`raw`].
    pub fn raw(&self) -> &raw::Client {
        &self.inner.raw
    }

    /// A handle on one store, for its items, keys and batch writes. Building it makes no
    /// request. One call may make one more, once per client and store: a `get` answered 404
    /// asks whether the store exists (Fastly answers 404 both for a missing item and a missing
    /// store, and only the first is `Ok(None)`), unless a call has already shown the store
    /// exists. Handles of the same client share what they learnt; [`Store::known_to_exist`]
    /// states it up front, so a missing item costs exactly one request.
    pub fn store(&self, store_id: impl Into<String>) -> Store {
        let id = store_id.into();
        let exists = self
            .inner
            .existing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone();
        Store::new(self.clone(), id, exists)
    }

    /// Creates a store (answered 201), optionally in a chosen location.
    ///
    /// Retries: only when the request provably never left, unless `retry_non_idempotent` is set: after
    /// a lost answer a second create would make a second store.
    pub async fn create_store(
        &self,
        name: impl Into<String>,
        location: Option<Location>,
    ) -> Result<StoreInfo, Error> {
        let body = raw::types::KvStoreRequestCreateOrUpdate { name: name.into() };
        // Not retried after an answer may have been lost: a second create would make a twin.
        let create = || Some(self.raw().kv_store_create(location.map(Into::into), &body));
        let created = transport::call(
            self.transport(),
            op("kv_store_create").not_idempotent_if(true),
            create,
        )
        .await?;
        Ok(created.into_inner().into())
    }

    /// Gets a store's details.
    pub async fn get_store(&self, store_id: &str) -> Result<StoreInfo, Error> {
        Ok(transport::call(self.transport(), op("kv_store_get"), || {
            Some(self.raw().kv_store_get(store_id))
        })
        .await?
        .into_inner()
        .into())
    }

    /// Renames a store.
    pub async fn rename_store(&self, store_id: &str, name: impl Into<String>) -> Result<(), Error> {
        let body = raw::types::KvStoreRequestCreateOrUpdate { name: name.into() };
        transport::call(self.transport(), op("kv_store_put"), || {
            Some(self.raw().kv_store_put(store_id, &body))
        })
        .await?;
        Ok(())
    }

    /// Deletes an empty store. A store that still holds items answers 409: the error's
    /// [`is_conflict()`](Error::is_conflict) is true; see [`delete_store_with_contents`](Self::delete_store_with_contents).
    pub async fn delete_store(&self, store_id: &str) -> Result<(), Error> {
        transport::call(self.transport(), op("kv_store_delete"), || {
            Some(self.raw().kv_store_delete(store_id))
        })
        .await?;
        Ok(())
    }

    /// Deletes every item of a store ([`Store::clear`], [`BulkOptions::concurrency`] deletes at
    /// a time), then the store. If any item could not be deleted the store is left in place,
    /// and the report names those keys. If the store's own delete fails (a write in between
    /// makes it 409), its error carries the report of the items deleted
    /// ([`Error::partial_report`]).
    pub async fn delete_store_with_contents(
        &self,
        store_id: &str,
        options: &BulkOptions,
    ) -> Result<BulkReport, Error> {
        let report = self.store(store_id).clear(options).await?;
        if report.failed.is_empty()
            && let Err(error) = self.delete_store(store_id).await
        {
            return Err(error.with_partial(report));
        }
        Ok(report)
    }

    /// Every store (or the one named), page by page under the hood.
    pub fn stores(&self, options: ListStores) -> BoxStream<'static, Result<StoreInfo, Error>> {
        let client = self.clone();
        let ListStores { name, limit } = options;
        let limit = limits::page_limit(limit);
        let pages = paging::by_cursor(Provider::Fastly, 0, None, None, move |cursor| {
            let (client, name, limit) = (client.clone(), name.clone(), limit.clone());
            async move {
                let limit = limit?;
                let list = || {
                    Some(
                        client
                            .raw()
                            .kv_store_list(cursor.as_deref(), limit, name.as_deref()),
                    )
                };
                let page = transport::call(client.transport(), op("kv_store_list"), list)
                    .await?
                    .into_inner();
                Ok((page.data, page.meta.next_cursor))
            }
        });
        paging::items(
            pages,
            |page: paging::CursorPage<raw::types::KvStoreDetails>| {
                page.items.into_iter().map(StoreInfo::from).collect()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    #[test]
    fn from_env_reads_the_token_and_the_base_url() {
        use progenitor_client::ClientInfo as _;
        let client = Client::from_vars(|name| match name {
            "FASTLY_API_TOKEN" => Some("t".into()),
            "FASTLY_API_URL" => Some("http://127.0.0.1:8787/fastly".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(client.raw().baseurl(), "http://127.0.0.1:8787/fastly");
        let error = Client::from_vars(|_| None).unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("FASTLY_API_TOKEN"), "{cause}");
    }
}
