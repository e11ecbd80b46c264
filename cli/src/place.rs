//! Where keys are: a store of either provider (`cf:<namespace id or title>`,
//! `fastly:<store id or name>`) or a file; the clients that reach the stores, with credentials
//! from the variables the official tools read; and what a failure makes the command exit with.

use std::path::PathBuf;
use std::sync::Arc;

use edgekv::kv::KvStore;
use edgekv::transfer::Format;
use futures_util::TryStreamExt as _;

use crate::{FileFormat, exit};

/// Why a command stopped: what to tell the operator, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn auth(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::AUTH,
            message: message.into(),
        }
    }

    pub(crate) fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::FAILED,
            message: message.into(),
        }
    }

    /// A call's error, about `what` (a store's address, a file): its exit code from its kind.
    pub(crate) fn of(what: &str, error: &edgekv::Error) -> Failure {
        let code = match error {
            edgekv::Error::InvalidInput(_) => exit::USAGE,
            edgekv::Error::Transport(_) => exit::UNREACHABLE,
            _ if matches!(error.status().map(|s| s.as_u16()), Some(401 | 403)) => exit::AUTH,
            _ => exit::FAILED,
        };
        let fix = match (code, error.status().map(|s| s.as_u16())) {
            (exit::AUTH, _) => " (check the credential variables: `edgekv --help` names them)",
            (exit::UNREACHABLE, _) => " (is the service, or the emulator --emulator names, up?)",
            (_, Some(409)) => {
                " (a store must be empty to be deleted: --with-contents deletes its keys first)"
            }
            _ if matches!(
                error,
                edgekv::Error::InvalidInput(edgekv::error::InvalidInput::TooManyDeletes { .. })
            ) =>
            {
                " (raise --max-delete-percent to allow it)"
            }
            _ => "",
        };
        // The server's words are made safe here, whole: a line break in them must not pass for
        // one of the command's own lines.
        Failure {
            code,
            message: format!(
                "{}: {}{fix}",
                crate::show::printable(what),
                crate::show::printable(&chain(error))
            ),
        }
    }
}

/// An error and its causes, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A store, resolved to its id.
pub(crate) struct Store {
    pub(crate) kv: Arc<dyn KvStore>,
    /// `cf:<namespace id>` or `fastly:<store id>`.
    pub(crate) address: String,
    pub(crate) handle: Handle,
}

/// The provider's client and the store's id.
pub(crate) enum Handle {
    Cloudflare(edgekv::cloudflare::Client, String),
    Fastly(edgekv::fastly::Client, String),
}

/// Where a job reads or writes: a store or a file (`-`: stdin or stdout).
pub(crate) enum Place {
    Store(Store),
    File { path: PathBuf, format: Format },
}

impl Place {
    pub(crate) fn name(&self) -> String {
        match self {
            Place::Store(store) => store.address.clone(),
            Place::File { path, .. } => path.display().to_string(),
        }
    }
}

/// How the stores are reached: the services, or an emulator.
pub(crate) struct Reach {
    pub(crate) emulator: Option<String>,
    pub(crate) account: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The token sent to an emulator: `EDGEKV_EMULATOR_TOKEN`, else the emulator's default.
fn emulator_token() -> String {
    var("EDGEKV_EMULATOR_TOKEN").unwrap_or_else(|| edgekv::emulator::DEFAULT_TOKEN.to_string())
}

/// An id a service gave back, checked before it is printed or put in a path: letters, digits,
/// `-` and `_` only (what both providers' ids are made of).
pub(crate) fn checked_id(id: String, address: &str) -> Result<String, Failure> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(plain) {
        return Ok(id);
    }
    Err(Failure::failed(format!(
        "{address}: the service answered with an id that is not one ({} bytes)",
        id.len()
    )))
}

impl Reach {
    /// A Cloudflare client: `CLOUDFLARE_API_TOKEN` (or `CLOUDFLARE_API_KEY` with
    /// `CLOUDFLARE_EMAIL`), the account from `--account`/`CLOUDFLARE_ACCOUNT_ID`, and
    /// `CLOUDFLARE_BASE_URL` when set; the emulator's where it is aimed at one.
    pub(crate) fn cloudflare(&self) -> Result<edgekv::cloudflare::Client, Failure> {
        use edgekv::cloudflare::{Auth, Client};
        let auth = match (
            var("CLOUDFLARE_API_TOKEN"),
            var("CLOUDFLARE_API_KEY"),
            var("CLOUDFLARE_EMAIL"),
        ) {
            // The services' credentials never go to an emulator's address.
            _ if self.emulator.is_some() => Auth::from(emulator_token()),
            (Some(token), _, _) => Auth::from(token),
            (None, Some(key), Some(email)) => Auth::global_key(email, key),
            _ => {
                return Err(Failure::auth(
                    "no Cloudflare credential: set CLOUDFLARE_API_TOKEN (or CLOUDFLARE_API_KEY \
                     and CLOUDFLARE_EMAIL)",
                ));
            }
        };
        // The services' account is not the emulator's: only one named on the command line goes
        // to an emulator.
        let account = match (&self.account, &self.emulator) {
            (Some(account), _) => account.clone(),
            (None, Some(_)) => edgekv::emulator::DEFAULT_ACCOUNT.to_string(),
            (None, None) if var("CLOUDFLARE_ACCOUNT_ID").is_some() => {
                var("CLOUDFLARE_ACCOUNT_ID").unwrap_or_default()
            }
            (None, None) => {
                return Err(Failure::auth(
                    "no Cloudflare account: set CLOUDFLARE_ACCOUNT_ID or pass --account",
                ));
            }
        };
        let mut builder = Client::builder(auth, account).policy(policy(
            self.emulator.is_none(),
            edgekv::policy::ClientLimit::CLOUDFLARE,
        ));
        if let Some(url) = &self.emulator {
            builder = builder.base_url(format!("{}/client/v4", url.trim_end_matches('/')));
        } else if let Some(url) = var("CLOUDFLARE_BASE_URL") {
            builder = builder.base_url(url);
        }
        builder
            .build()
            .map_err(|e| Failure::of("the Cloudflare client", &e))
    }

    /// A Fastly client: `FASTLY_API_TOKEN`, and `FASTLY_API_URL` when set; the emulator's where
    /// it is aimed at one.
    pub(crate) fn fastly(&self) -> Result<edgekv::fastly::Client, Failure> {
        let token = match (var("FASTLY_API_TOKEN"), &self.emulator) {
            // The services' credentials never go to an emulator's address.
            (_, Some(_)) => emulator_token(),
            (Some(token), None) => token,
            (None, None) => {
                return Err(Failure::auth("no Fastly credential: set FASTLY_API_TOKEN"));
            }
        };
        let mut builder = edgekv::fastly::Client::builder(token).policy(policy(
            self.emulator.is_none(),
            edgekv::policy::ClientLimit::FASTLY_WRITES,
        ));
        if let Some(url) = &self.emulator {
            builder = builder.base_url(url.trim_end_matches('/'));
        } else if let Some(url) = var("FASTLY_API_URL") {
            builder = builder.base_url(url);
        }
        builder
            .build()
            .map_err(|e| Failure::of("the Fastly client", &e))
    }

    /// The store `address` names, found by id or by a unique title or name; the lookup also
    /// proves the credential, so a refused one is reported before any job starts.
    pub(crate) async fn store(&self, address: &str) -> Result<Store, Failure> {
        let bad = || {
            Failure::usage(format!(
                "{address:?} is not a store address: write cf:<namespace id or title> or \
                 fastly:<store id or name>"
            ))
        };
        let (provider, name) = address.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match provider {
            "cf" | "cloudflare" => {
                let client = self.cloudflare()?;
                let id = if is_namespace_id(name) {
                    match client.get_namespace(name).await {
                        Ok(_) => name.to_string(),
                        Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => {
                            return Err(Failure::usage(format!(
                                "{address}: no namespace has that id in account {} (list them: \
                                 edgekv stores list cf)",
                                client.account_id()
                            )));
                        }
                        Err(e) => return Err(Failure::of(address, &e)),
                    }
                } else {
                    let titled = client
                        .namespaces(None)
                        .try_filter(|n| std::future::ready(n.title == name))
                        .try_collect::<Vec<_>>()
                        .await
                        .map_err(|e| Failure::of(address, &e))?;
                    match titled.as_slice() {
                        [one] => checked_id(one.id.clone(), address)?,
                        [] => {
                            return Err(Failure::usage(format!(
                                "{address}: no namespace has that id or title in account {} \
                                 (list them: edgekv stores list cf)",
                                client.account_id()
                            )));
                        }
                        _ => {
                            return Err(Failure::usage(format!(
                                "{address}: {} namespaces have that title: name one by its id",
                                titled.len()
                            )));
                        }
                    }
                };
                Ok(Store {
                    kv: Arc::new(client.namespace(&id)),
                    address: format!("cf:{id}"),
                    handle: Handle::Cloudflare(client, id),
                })
            }
            "fastly" => {
                let client = self.fastly()?;
                let id = match client.get_store(name).await {
                    Ok(info) => checked_id(info.id, address)?,
                    Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => {
                        let named = client
                            .stores(edgekv::fastly::ListStores::default())
                            .try_filter(|s| std::future::ready(s.name == name))
                            .try_collect::<Vec<_>>()
                            .await
                            .map_err(|e| Failure::of(address, &e))?;
                        match named.as_slice() {
                            [one] => checked_id(one.id.clone(), address)?,
                            [] => {
                                return Err(Failure::usage(format!(
                                    "{address}: no store has that id or name (list them: \
                                     edgekv stores list fastly)"
                                )));
                            }
                            _ => {
                                return Err(Failure::usage(format!(
                                    "{address}: {} stores have that name: name one by its id",
                                    named.len()
                                )));
                            }
                        }
                    }
                    Err(e) => return Err(Failure::of(address, &e)),
                };
                Ok(Store {
                    kv: Arc::new(client.store(&id)),
                    address: format!("fastly:{id}"),
                    handle: Handle::Fastly(client, id),
                })
            }
            _ => Err(bad()),
        }
    }

    /// A store, or a file: `-` is stdin (`reading`) or stdout, in `format` or the one its name
    /// says (`-`: Fastly's lines).
    pub(crate) async fn place(
        &self,
        address: &str,
        format: Option<FileFormat>,
        reading: bool,
    ) -> Result<Place, Failure> {
        if is_store_address(address) {
            return Ok(Place::Store(self.store(address).await?));
        }
        // `word:…` is an address with a scheme mistyped, not a file to create.
        if let Some((scheme, _)) = address.split_once(':')
            && !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(Failure::usage(format!(
                "{address:?}: {scheme}: is not a store kind: write cf:… or fastly:…, or ./{address} \
                 for a file"
            )));
        }
        let path = match address {
            "-" if reading => PathBuf::from("/dev/stdin"),
            "-" => PathBuf::from("/dev/stdout"),
            _ => PathBuf::from(address),
        };
        let format = match (format, address) {
            (Some(FileFormat::Json), _) => Format::Wrangler,
            (Some(FileFormat::Ndjson), _) | (None, "-") => Format::FastlyNdjson,
            (Some(FileFormat::Dir), _) => Format::Directory,
            (None, _) => match Format::of(&path) {
                // A directory only when it is one or is written as one: `out.txt` is more
                // likely a mistake than a directory to fill.
                Format::Directory if !(path.is_dir() || address.ends_with('/')) => {
                    return Err(Failure::usage(format!(
                        "{address}: name a file *.json (wrangler's bulk JSON) or *.ndjson \
                         (Fastly's lines), or a directory (an existing one, a name ending in \
                         /), or say which with --format json, ndjson or dir"
                    )));
                }
                format => format,
            },
        };
        Ok(Place::File { path, format })
    }
}

/// Whether `address` names a store (anything else is a file's path).
pub(crate) fn is_store_address(address: &str) -> bool {
    ["cf:", "cloudflare:", "fastly:"]
        .iter()
        .any(|p| address.starts_with(p))
}

/// A Cloudflare namespace id: 32 hexadecimal digits.
fn is_namespace_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Requests as the library sends them; against the services, within the provider's budget
/// (Cloudflare: 1,200 requests per 5 minutes; Fastly: 1,000 writes an hour), so a long job
/// waits instead of being refused. An emulator enforces what budget it is given itself.
fn policy(
    to_the_service: bool,
    budget: edgekv::policy::ClientLimit,
) -> edgekv::policy::RequestPolicy {
    let mut policy = edgekv::policy::RequestPolicy::default();
    if to_the_service {
        policy.client_limit = Some(budget);
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_addresses_and_files_are_told_apart() {
        assert!(is_store_address("cf:0123"));
        assert!(is_store_address("fastly:abc"));
        assert!(!is_store_address("dump.json"));
        assert!(!is_store_address("./cf:dir"));
        assert!(is_namespace_id("0123456789abcdef0123456789ABCDEF"));
        assert!(!is_namespace_id("my-namespace"));
    }
}
