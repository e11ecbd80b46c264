//! Cloudflare Workers KV: namespaces, values with metadata and expiration, key listings, bulk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), edgekv::Error> {
//! use edgekv::cloudflare::{Client, PutOptions};
//! use futures_util::TryStreamExt as _;
//!
//! let client = Client::from_env()?; // CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID
//! let namespace = client.namespace("0f2ac74b498b48028cb68387c421e279");
//! namespace.put("greeting", "hello", PutOptions::new().expiration_ttl(3600)).await?;
//! if let Some(value) = namespace.get("greeting").await? {
//!     println!("{:?} expires at {:?}", value.expiration(), value.into_body().bytes().await?);
//! }
//! let keys: Vec<_> = namespace.keys(Default::default()).try_collect().await?;
//! # Ok(())
//! # }
//! ```

mod bulk;
mod envelope;
mod handle;
mod kv;
pub mod limits;
pub mod raw;

use std::fmt;
use std::sync::Arc;

use futures_util::stream::BoxStream;

pub use crate::bulk::{BulkReport, FailedKey, Failure};
pub use bulk::{BulkEntry, BulkGetOptions, BulkOptions, BulkValue};
pub use envelope::Reply;
pub use handle::{Key, KeyPage, ListKeys, Namespace, PutOptions, Value};

use crate::builder::Settings;
use crate::error::{Error, InvalidInput, Provider};
use crate::paging;
use crate::policy::RequestPolicy;
use crate::transport::{Call, Credential, Transport};

/// Where the API lives unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// A Cloudflare Workers KV client for one account. Cheap to clone; `Debug` shows no credential.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    raw: raw::Client,
    account_id: String,
    /// Whether each namespace stores keys literally (`supports_url_encoding: false`), looked up
    /// at most once per client and namespace: handles built per request share it.
    literal_keys:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use progenitor_client::ClientInfo as _;
        f.debug_struct("cloudflare::Client")
            .field("base_url", &self.inner.raw.baseurl())
            .field("account_id", &self.inner.account_id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    settings: Settings,
    account_id: String,
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

    /// Sends requests through this `reqwest::Client` (its timeouts, proxy and TLS settings).
    /// Give it a redirect policy that does not follow redirects to other hosts: the credential is
    /// added to each request, and only `Authorization` is dropped by reqwest on such a redirect.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.settings.http = Some(http);
        self
    }

    /// Builds the client. Fails if the credential cannot be sent as header values.
    pub fn build(self) -> Result<Client, Error> {
        let (transport, http, base_url) = self.settings.build(Provider::Cloudflare)?;
        let raw = raw::Client::new_with_client(&base_url, http, transport);
        Ok(Client {
            inner: Arc::new(Inner {
                raw,
                account_id: self.account_id,
                literal_keys: Default::default(),
            }),
        })
    }
}

/// How a Cloudflare client authenticates: an API token (a string converts to one), or the older
/// account email with its global API key. `Debug` shows no secret.
///
/// ```
/// use edgekv::cloudflare::{Auth, Client};
///
/// let with_token = Client::builder("api-token", "account-id");
/// let with_global_key = Client::builder(Auth::global_key("ops@example.com", "key"), "account-id");
/// assert_eq!(format!("{:?}", Auth::from("api-token")), "ApiToken(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// An API token, sent as `Authorization: Bearer <token>`.
    ApiToken(String),
    /// The account's email and global API key, sent as `X-Auth-Email` and `X-Auth-Key`.
    GlobalKey {
        /// The account's email address.
        email: String,
        /// The global API key.
        key: String,
    },
}

impl Auth {
    /// The older email + global API key credential.
    pub fn global_key(email: impl Into<String>, key: impl Into<String>) -> Self {
        Auth::GlobalKey {
            email: email.into(),
            key: key.into(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::ApiToken(_) => f.write_str("ApiToken(<redacted>)"),
            Auth::GlobalKey { .. } => {
                f.write_str("GlobalKey { email: <redacted>, key: <redacted> }")
            }
        }
    }
}

impl From<String> for Auth {
    fn from(api_token: String) -> Self {
        Auth::ApiToken(api_token)
    }
}

impl From<&str> for Auth {
    fn from(api_token: &str) -> Self {
        Auth::ApiToken(api_token.to_string())
    }
}

impl From<&String> for Auth {
    fn from(api_token: &String) -> Self {
        Auth::ApiToken(api_token.clone())
    }
}

impl From<Auth> for Credential {
    fn from(auth: Auth) -> Self {
        match auth {
            Auth::ApiToken(token) => Credential::CloudflareToken(token),
            Auth::GlobalKey { email, key } => Credential::CloudflareGlobalKey { email, key },
        }
    }
}

impl Client {
    /// A client for `account_id` authenticated with an API token.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), edgekv::Error> {
    /// let client = edgekv::cloudflare::Client::new("api-token", "023e105f4ecef8ad9ca31a8372d0c353")?;
    /// let namespace = client.namespace("0f2ac74b498b48028cb68387c421e279");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(api_token: impl Into<String>, account_id: impl Into<String>) -> Result<Self, Error> {
        Self::builder(Auth::ApiToken(api_token.into()), account_id).build()
    }

    /// A builder, for the older email + global key credential ([`Auth::global_key`]), another
    /// base URL, a policy or an existing `reqwest::Client`. The same shape as
    /// [`fastly::Client::builder`](crate::fastly::Client::builder), with the account added.
    pub fn builder(auth: impl Into<Auth>, account_id: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            settings: Settings::new(auth.into().into(), DEFAULT_BASE_URL),
            account_id: account_id.into(),
        }
    }

    /// A client from the variables Cloudflare's own tools read: `CLOUDFLARE_API_TOKEN` (or the
    /// older `CLOUDFLARE_API_KEY` with `CLOUDFLARE_EMAIL`), `CLOUDFLARE_ACCOUNT_ID`, and
    /// `CLOUDFLARE_BASE_URL` when set (as Cloudflare's SDKs read it), so a service can be pointed
    /// at a local `edgekv-emulator` without a code change.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `var`.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let missing = |what: &str| InvalidInput::Missing {
            what: format!("environment variable {what}"),
        };
        let credential = match (
            var("CLOUDFLARE_API_TOKEN"),
            var("CLOUDFLARE_API_KEY"),
            var("CLOUDFLARE_EMAIL"),
        ) {
            (Some(token), _, _) => Auth::ApiToken(token),
            (None, Some(key), Some(email)) => Auth::GlobalKey { email, key },
            _ => {
                return Err(missing(
                    "CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_KEY and CLOUDFLARE_EMAIL)",
                )
                .into());
            }
        };
        let account =
            var("CLOUDFLARE_ACCOUNT_ID").ok_or_else(|| missing("CLOUDFLARE_ACCOUNT_ID"))?;
        let mut builder = Self::builder(credential, account);
        if let Some(base_url) = var("CLOUDFLARE_BASE_URL") {
            builder = builder.base_url(base_url);
        }
        builder.build()
    }

    /// The account this client works in.
    pub fn account_id(&self) -> &str {
        &self.inner.account_id
    }

    pub(crate) fn transport(&self) -> &Transport {
        use progenitor_client::ClientInfo as _;
        self.inner.raw.inner()
    }

    /// What the service said about its rate limit on the latest answer that told (Cloudflare's
    /// `Ratelimit` / `Ratelimit-Policy` and `X-RateLimit-*` headers).
    pub fn rate_limit(&self) -> Option<crate::policy::RateLimit> {
        self.transport().rate_limit()
    }

    /// The generated client underneath, for calls the facade does not cover. Outside the
    /// crate's semver promise, like everything in [`raw`].
    pub fn raw(&self) -> &raw::Client {
        &self.inner.raw
    }

    /// A handle on one namespace, for its values, keys and bulk calls. Building it makes no
    /// request. One call may make one more, once per client and namespace: the first `get`,
    /// `put`, `delete` or `metadata` of a key that needs URL encoding (outside RFC 3986 `pchar`:
    /// `/`, space, non-ASCII…) reads the namespace's `supports_url_encoding`, since a namespace
    /// that stores keys literally cannot hold such keys. Handles of the same client share what it
    /// learnt; [`Namespace::with_url_encoding`] states it up front, so no lookup is ever made.
    pub fn namespace(&self, namespace_id: impl Into<String>) -> Namespace {
        let id = namespace_id.into();
        let literal_keys = self
            .inner
            .literal_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone();
        Namespace::new(self.clone(), id, literal_keys)
    }

    /// Creates a namespace. A title the account already uses answers 400 with code 10014.
    ///
    /// Retries: only when the request provably never left, unless `retry_non_idempotent` is set: after
    /// a lost answer a second create would fail as a duplicate.
    pub async fn create_namespace(
        &self,
        title: impl Into<String>,
    ) -> Result<Reply<NamespaceInfo>, Error> {
        let body = raw::types::NamespaceTitle {
            title: title.into(),
        };
        // Not retried after an answer may have been lost: a second create would fail as a duplicate.
        let call = op("namespace_create").not_idempotent_if(true);
        let reply = envelope::call(self.raw(), call, || {
            Some(self.raw().namespace_create(self.account_id(), &body))
        })
        .await?;
        namespace_result(reply)
    }

    /// Gets a namespace's title and settings.
    pub async fn get_namespace(&self, namespace_id: &str) -> Result<Reply<NamespaceInfo>, Error> {
        let get = || Some(self.raw().namespace_get(self.account_id(), namespace_id));
        namespace_result(envelope::call(self.raw(), op("namespace_get"), get).await?)
    }

    /// Renames a namespace and returns it.
    pub async fn rename_namespace(
        &self,
        namespace_id: &str,
        title: impl Into<String>,
    ) -> Result<Reply<NamespaceInfo>, Error> {
        let body = raw::types::NamespaceTitle {
            title: title.into(),
        };
        let rename = || {
            Some(
                self.raw()
                    .namespace_rename(self.account_id(), namespace_id, &body),
            )
        };
        namespace_result(envelope::call(self.raw(), op("namespace_rename"), rename).await?)
    }

    /// Deletes a namespace and everything in it.
    pub async fn delete_namespace(&self, namespace_id: &str) -> Result<Reply<()>, Error> {
        let delete = || Some(self.raw().namespace_delete(self.account_id(), namespace_id));
        Ok(envelope::call(self.raw(), op("namespace_delete"), delete)
            .await?
            .map(drop))
    }

    /// Every namespace of the account, fetched a page at a time (`per_page` 5 to 100, default
    /// 20). The listing ends when `result_info` says the last page was read.
    pub fn namespaces(
        &self,
        per_page: Option<u32>,
    ) -> BoxStream<'static, Result<NamespaceInfo, Error>> {
        if let Err(e) = limits::check_page_limit(
            "per_page",
            per_page,
            limits::NAMESPACES_PAGE_LIMIT,
            "5 to 100",
        ) {
            return Box::pin(futures_util::stream::once(async move { Err(e.into()) }));
        }
        let client = self.clone();
        let pages = paging::pages(0, 1u32, move |page: u32| {
            let client = client.clone();
            paging::boxed(async move {
                let list = || {
                    let page = std::num::NonZeroU32::new(page);
                    Some(client.raw().namespace_list(
                        client.account_id(),
                        None,
                        None,
                        page,
                        per_page,
                    ))
                };
                let response =
                    crate::transport::call(client.transport(), op("namespace_list"), list).await?;
                let status = response.status();
                let body = response.into_inner();
                let info = body.result_info.clone();
                let (namespaces, _) =
                    envelope::unwrap(client.transport(), status, body)?.into_parts();
                let next = next_page(page, info.as_ref(), namespaces.len())?;
                Ok((namespaces, next))
            })
        });
        paging::items(pages, |namespaces: Vec<raw::types::Namespace>| {
            namespaces.into_iter().map(NamespaceInfo::from).collect()
        })
    }
}

/// The page after `page`, if any, from what `result_info` says: an empty page ends the
/// listing, as does a page at or past `total_pages` (else `total_count` ÷ `per_page`). Numbers
/// that contradict the page they came with are an error, never a reason to go on asking.
fn next_page(
    page: u32,
    info: Option<&raw::types::ResultInfo>,
    page_len: usize,
) -> Result<Option<u32>, Error> {
    let contradiction = |what: &str| {
        Err(Error::bad_response(
            Provider::Cloudflare,
            None,
            format!("the namespace listing contradicts itself: {what}"),
        ))
    };
    if page_len == 0 {
        return Ok(None);
    }
    let info = info.cloned().unwrap_or_default();
    if info
        .page
        .is_some_and(|answered| answered != u64::from(page))
    {
        return contradiction("it answered another page than the one asked for");
    }
    let more = if let Some(total_pages) = info.total_pages {
        u64::from(page) < total_pages
    } else if let (Some(total), Some(per_page)) = (info.total_count, info.per_page) {
        if per_page == 0 {
            return contradiction("per_page is 0 on a page with namespaces");
        }
        match u64::from(page).checked_mul(per_page) {
            Some(listed) => listed < total,
            None => return contradiction("page × per_page overflows"),
        }
    } else {
        true
    };
    if !more {
        return Ok(None);
    }
    match page.checked_add(1) {
        Some(next) => Ok(Some(next)),
        None => contradiction("more pages than a page number can count"),
    }
}

/// A namespace's identity and settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceInfo {
    /// Namespace identifier.
    pub id: String,
    /// Human-readable title.
    pub title: String,
    /// Whether keys written on the URL are URL-decoded before storing (`None`: not said).
    pub supports_url_encoding: Option<bool>,
}

impl From<raw::types::Namespace> for NamespaceInfo {
    fn from(n: raw::types::Namespace) -> Self {
        NamespaceInfo {
            id: n.id,
            title: n.title,
            supports_url_encoding: n.supports_url_encoding,
        }
    }
}

/// A call of this provider's `operation`.
pub(crate) fn op(operation: &'static str) -> Call<'static> {
    Call::new(Provider::Cloudflare, raw::OPERATIONS, operation)
}

fn namespace_result(
    reply: Reply<Option<raw::types::Namespace>>,
) -> Result<Reply<NamespaceInfo>, Error> {
    let (namespace, messages) = reply.into_parts();
    let namespace = namespace.ok_or_else(|| {
        Error::bad_response(
            Provider::Cloudflare,
            None,
            "a successful answer without its namespace",
        )
    })?;
    Ok(Reply::new(NamespaceInfo::from(namespace), messages))
}

#[cfg(test)]
mod tests {
    use super::Client;

    fn vars<'a>(set: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn from_env_reads_the_token_the_account_and_the_base_url() {
        use progenitor_client::ClientInfo as _;
        let client = Client::from_vars(vars(&[
            ("CLOUDFLARE_API_TOKEN", "t"),
            ("CLOUDFLARE_ACCOUNT_ID", "a"),
            ("CLOUDFLARE_BASE_URL", "http://127.0.0.1:8787/cloudflare/"),
        ]))
        .unwrap();
        assert_eq!(client.account_id(), "a");
        assert_eq!(client.raw().baseurl(), "http://127.0.0.1:8787/cloudflare");
        let default = Client::from_vars(vars(&[
            ("CLOUDFLARE_API_KEY", "k"),
            ("CLOUDFLARE_EMAIL", "e@example.com"),
            ("CLOUDFLARE_ACCOUNT_ID", "a"),
        ]))
        .unwrap();
        assert_eq!(default.raw().baseurl(), super::DEFAULT_BASE_URL);
    }

    #[test]
    fn from_env_names_what_is_missing() {
        let error = Client::from_vars(vars(&[("CLOUDFLARE_ACCOUNT_ID", "a")])).unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("CLOUDFLARE_API_TOKEN"), "{cause}");
        let error = Client::from_vars(vars(&[("CLOUDFLARE_API_TOKEN", "t")])).unwrap_err();
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("CLOUDFLARE_ACCOUNT_ID"), "{cause}");
    }
}
