//! The Cloudflare Workers KV API, emulated: `specs/cloudflare-kv.yaml` with the live service's
//! envelopes, error codes and limits.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use super::persist::Record;
use super::rules::cloudflare as rules;
use super::{Request, Shared, json, respond};

#[derive(Default)]
pub(crate) struct State {
    namespaces: BTreeMap<String, Namespace>,
    /// Whether changes are logged (the emulator persists).
    pub(crate) journaling: bool,
    /// Changes made by the request being served, for the log.
    pub(crate) pending: Vec<Record>,
}

/// Where a namespace's changes are logged: the state's log when journaling, else nowhere.
struct Log<'a> {
    namespace: &'a str,
    pending: Option<&'a mut Vec<Record>>,
}

impl Log<'_> {
    fn put(&mut self, key: &str, entry: &Entry) {
        if let Some(pending) = self.pending.as_deref_mut() {
            pending.push(put_record(self.namespace, key, entry));
        }
    }

    fn delete(&mut self, key: &str) {
        if let Some(pending) = self.pending.as_deref_mut() {
            pending.push(Record::CloudflareDelete {
                namespace: self.namespace.to_string(),
                key: key.to_string(),
            });
        }
    }
}

fn put_record(namespace: &str, key: &str, entry: &Entry) -> Record {
    Record::CloudflarePut {
        namespace: namespace.to_string(),
        key: key.to_string(),
        value: entry.value.clone(),
        expiration: entry.expiration,
        metadata: entry.metadata.as_ref().map(Value::to_string),
    }
}

fn namespace_record(id: &str, ns: &Namespace) -> Record {
    Record::CloudflareNamespace {
        id: id.to_string(),
        title: ns.title.clone(),
        supports_url_encoding: ns.supports_url_encoding,
    }
}

impl State {
    fn log(&mut self, record: impl FnOnce() -> Record) {
        if self.journaling {
            self.pending.push(record());
        }
    }

    /// Applies a logged change (others' records are skipped).
    pub(crate) fn replay(&mut self, record: &Record) {
        match record {
            Record::CloudflareNamespace {
                id,
                title,
                supports_url_encoding,
            } => {
                let ns = self
                    .namespaces
                    .entry(id.clone())
                    .or_insert_with(|| Namespace {
                        title: String::new(),
                        supports_url_encoding: *supports_url_encoding,
                        keys: BTreeMap::new(),
                    });
                ns.title = title.clone();
                ns.supports_url_encoding = *supports_url_encoding;
            }
            Record::CloudflareNamespaceDeleted { id } => {
                self.namespaces.remove(id);
            }
            Record::CloudflarePut {
                namespace,
                key,
                value,
                expiration,
                metadata,
            } => {
                if let Some(ns) = self.namespaces.get_mut(namespace) {
                    let entry = Entry {
                        value: value.clone(),
                        expiration: *expiration,
                        metadata: metadata
                            .as_deref()
                            .and_then(|m| serde_json::from_str(m).ok()),
                    };
                    ns.keys.insert(key.clone(), entry);
                }
            }
            Record::CloudflareDelete { namespace, key } => {
                if let Some(ns) = self.namespaces.get_mut(namespace) {
                    ns.keys.remove(key);
                }
            }
            _ => {}
        }
    }

    /// The state as records, for a compacted log.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for (id, ns) in &self.namespaces {
            records.push(namespace_record(id, ns));
            for (key, entry) in &ns.keys {
                records.push(put_record(id, key, entry));
            }
        }
        records
    }

    /// Writes entries as the emulator's seeding does: no metadata, no expiration.
    pub(crate) fn seed(
        &mut self,
        id: &str,
        entries: impl Iterator<Item = (String, Bytes)>,
    ) -> std::io::Result<()> {
        let journaling = self.journaling;
        let Some(ns) = self.namespaces.get_mut(id) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no Cloudflare namespace {id:?}"),
            ));
        };
        let mut log = Log {
            namespace: id,
            pending: journaling.then_some(&mut self.pending),
        };
        for (key, value) in entries {
            rules::check_key(&key).map_err(|refusal| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, refusal.to_string())
            })?;
            let entry = Entry {
                value,
                expiration: None,
                metadata: None,
            };
            log.put(&key, &entry);
            ns.keys.insert(key, entry);
        }
        Ok(())
    }
}

struct Namespace {
    title: String,
    supports_url_encoding: bool,
    keys: BTreeMap<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    value: Bytes,
    /// UNIX seconds at which the key expires.
    expiration: Option<i64>,
    metadata: Option<Value>,
}

impl Entry {
    fn live(&self, now: i64) -> bool {
        self.expiration.is_none_or(|at| now < at)
    }
}

/// A value write's parts, once the body (raw or multipart) is read.
struct Write {
    value: Bytes,
    metadata: Option<String>,
}

/// A failure envelope yet to be sent: status, Cloudflare code, message.
struct Fail(StatusCode, i64, String);

impl Fail {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Fail(status, code, message.into())
    }

    fn respond(self) -> Response<Body> {
        fail(self.0, self.1, self.2)
    }
}

fn ok(result: Value) -> Response<Body> {
    json(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn fail(status: StatusCode, code: i64, message: impl Into<String>) -> Response<Body> {
    let message = message.into();
    json(
        status,
        json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
    )
}

fn namespace_json(id: &str, ns: &Namespace) -> Value {
    json!({"id": id, "title": ns.title, "supports_url_encoding": ns.supports_url_encoding})
}

pub(crate) async fn serve(shared: &Shared, request: Request) -> Response<Body> {
    let bearer = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    let global_key = request
        .header("x-auth-email")
        .and(request.header("x-auth-key"));
    let tokens = &shared.config.cloudflare_tokens;
    if !bearer
        .or(global_key)
        .is_some_and(|t| tokens.iter().any(|k| k == t))
    {
        return fail(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    // Segments: client, v4, accounts, {account}, storage, kv, namespaces, {ns}, ...
    let parts: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    if parts.get(3) != Some(&shared.config.cloudflare_account.as_str())
        || parts.get(4..7) != Some(&["storage", "kv", "namespaces"][..])
    {
        return fail(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to the URI, perhaps your object identifier is invalid?",
        );
    }
    // A multipart value write is read before taking the lock (reading it is asynchronous).
    let write = match (&request.method, parts.get(8)) {
        (&Method::PUT, Some(&"values")) => match read_write(&request).await {
            Ok(write) => Some(write),
            Err(response) => return response.respond(),
        },
        _ => None,
    };
    let mut state = shared.cloudflare();
    let response = dispatch(shared, &mut state, &request, &parts, write);
    // Durable before it is answered, and in the state's order (the lock is still held).
    match shared.persist(&mut state.pending) {
        Ok(()) => response,
        Err(error) => super::not_persisted(&error),
    }
}

fn dispatch(
    shared: &Shared,
    state: &mut State,
    request: &Request,
    parts: &[&str],
    write: Option<Write>,
) -> Response<Body> {
    match (&request.method, &parts[7.min(parts.len())..]) {
        (&Method::GET, []) => list_namespaces(state, request),
        (&Method::POST, []) => create_namespace(shared, state, request),
        (&Method::GET, [id]) => match state.namespaces.get(*id) {
            Some(ns) => ok(namespace_json(id, ns)),
            None => namespace_not_found(),
        },
        (&Method::PUT, [id]) => rename_namespace(state, id, request),
        (&Method::DELETE, [id]) => match state.namespaces.remove(*id) {
            Some(_) => {
                state.log(|| Record::CloudflareNamespaceDeleted { id: id.to_string() });
                ok(Value::Null)
            }
            None => namespace_not_found(),
        },
        (method, [id, rest @ ..]) => {
            let journaling = state.journaling;
            let Some(ns) = state.namespaces.get_mut(*id) else {
                return namespace_not_found();
            };
            let mut log = Log {
                namespace: id,
                pending: journaling.then_some(&mut state.pending),
            };
            match (method, rest) {
                (&Method::GET, ["keys"]) => list_keys(ns, request),
                (&Method::GET, ["values", _]) => with_key(ns, request, get_value),
                (&Method::PUT, ["values", _]) => match write {
                    Some(write) => put_value(ns, request, write, &mut log),
                    None => fail(StatusCode::BAD_REQUEST, 10001, "no value"),
                },
                (&Method::DELETE, ["values", _]) => with_key(ns, request, |ns, key, _| {
                    if ns.keys.remove(key).is_some() {
                        log.delete(key);
                    }
                    ok(Value::Null)
                }),
                (&Method::GET, ["metadata", _]) => with_key(ns, request, get_metadata),
                (&Method::PUT, ["bulk"]) => bulk_write(ns, request, &mut log),
                (&Method::POST, ["bulk", "delete"]) => bulk_delete(ns, request, &mut log),
                (&Method::POST, ["bulk", "get"]) => bulk_get(ns, request),
                (_, [] | ["values", _]) => super::method_not_allowed("GET, PUT, DELETE"),
                (_, ["keys"] | ["metadata", _]) => super::method_not_allowed("GET"),
                (_, ["bulk"]) => super::method_not_allowed("PUT"),
                (_, ["bulk", "delete" | "get"]) => super::method_not_allowed("POST"),
                _ => fail(StatusCode::NOT_FOUND, 7003, "No route for the URI"),
            }
        }
        (_, []) => super::method_not_allowed("GET, POST"),
    }
}

fn namespace_not_found() -> Response<Body> {
    fail(StatusCode::NOT_FOUND, 10013, "namespace not found")
}

fn key_not_found() -> Response<Body> {
    fail(StatusCode::NOT_FOUND, 10009, "get: 'key not found'")
}

/// The key of a `/values/{key}` or `/metadata/{key}` path: decoded, unless the namespace
/// stores keys as written on the URL.
fn with_key(
    ns: &mut Namespace,
    request: &Request,
    f: impl FnOnce(&mut Namespace, &str, &Request) -> Response<Body>,
) -> Response<Body> {
    let key = if ns.supports_url_encoding {
        request.decoded(9)
    } else {
        request.segments.get(9).cloned()
    };
    let key = key.unwrap_or_default();
    if let Err(response) = check_key(&key) {
        return response.respond();
    }
    f(ns, &key, request)
}

/// A refused key as the emulator answers it: too long is 414 (the key is part of the URI), any
/// other refusal 400.
fn check_key(key: &str) -> Result<(), Fail> {
    rules::check_key(key).map_err(|refusal| match refusal {
        rules::KeyRefusal::TooLong { .. } => {
            Fail::new(StatusCode::URI_TOO_LONG, 10033, refusal.to_string())
        }
        rules::KeyRefusal::Empty | rules::KeyRefusal::DotSegment => {
            Fail::new(StatusCode::BAD_REQUEST, 10019, refusal.to_string())
        }
    })
}

/// A key named by a bulk delete or get: the schema bounds its length
/// (`workers-kv_key_name_bulk`, `maxLength: 512`); a key that could never be written is just
/// not found.
fn check_named_key(key: &str) -> Result<(), Fail> {
    match check_key(key) {
        Err(fail) if fail.0 == StatusCode::URI_TOO_LONG => Err(fail),
        _ => Ok(()),
    }
}

fn list_namespaces(state: &State, request: &Request) -> Response<Body> {
    let page = request
        .query("page")
        .map_or(Some(1), |p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1);
    let per_page = request
        .query("per_page")
        .map_or(Some(20), |p| p.parse::<usize>().ok())
        .filter(|p| (5..=100).contains(p));
    let (Some(page), Some(per_page)) = (page, per_page) else {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "page must be at least 1 and per_page 5 to 100",
        );
    };
    let mut all: Vec<(&String, &Namespace)> = state.namespaces.iter().collect();
    if request.query("order") == Some("title") {
        all.sort_by(|a, b| a.1.title.cmp(&b.1.title));
    }
    if request.query("direction") == Some("desc") {
        all.reverse();
    }
    let result: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(id, ns)| namespace_json(id, ns))
        .collect();
    let total = all.len();
    json(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result, "result_info": {
            "page": page, "per_page": per_page, "count": result.len(), "total_count": total,
            "total_pages": total.div_ceil(per_page),
        }}),
    )
}

fn title_of(request: &Request) -> Result<String, Fail> {
    serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|b| b.get("title").and_then(Value::as_str).map(str::to_string))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Fail::new(StatusCode::BAD_REQUEST, 10019, "title is required"))
}

fn create_namespace(shared: &Shared, state: &mut State, request: &Request) -> Response<Body> {
    let title = match title_of(request) {
        Ok(title) => title,
        Err(response) => return response.respond(),
    };
    if state.namespaces.values().any(|ns| ns.title == title) {
        return fail(
            StatusCode::BAD_REQUEST,
            10014,
            "a namespace with this account ID and title already exists",
        );
    }
    let id = super::random_id(shared, 32, b"0123456789abcdef");
    let ns = Namespace {
        title,
        supports_url_encoding: true,
        keys: BTreeMap::new(),
    };
    let body = namespace_json(&id, &ns);
    state.log(|| namespace_record(&id, &ns));
    state.namespaces.insert(id, ns);
    ok(body)
}

fn rename_namespace(state: &mut State, id: &str, request: &Request) -> Response<Body> {
    let title = match title_of(request) {
        Ok(title) => title,
        Err(response) => return response.respond(),
    };
    if state
        .namespaces
        .iter()
        .any(|(other, ns)| other != id && ns.title == title)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            10014,
            "a namespace with this account ID and title already exists",
        );
    }
    let Some(ns) = state.namespaces.get_mut(id) else {
        return namespace_not_found();
    };
    ns.title = title;
    let body = namespace_json(id, ns);
    let record = namespace_record(id, ns);
    state.log(|| record);
    ok(body)
}

fn list_keys(ns: &Namespace, request: &Request) -> Response<Body> {
    let limit = request
        .query("limit")
        .map_or(Some(1000), |l| l.parse::<usize>().ok())
        .filter(|l| (10..=1000).contains(l));
    let Some(limit) = limit else {
        return fail(StatusCode::BAD_REQUEST, 10001, "limit must be 10 to 1000");
    };
    let prefix = request.query("prefix").unwrap_or_default();
    let after = match request.query("cursor").filter(|c| !c.is_empty()) {
        Some(cursor) => match decode_cursor(cursor) {
            Some(after) => Some(after),
            None => return fail(StatusCode::BAD_REQUEST, 10001, "invalid cursor"),
        },
        None => None,
    };
    let now = request.now();
    // From whichever is later, the cursor (exclusive) or the prefix, while keys share the prefix.
    let start = match &after {
        Some(after) if after.as_str() >= prefix => std::ops::Bound::Excluded(after.clone()),
        _ => std::ops::Bound::Included(prefix.to_string()),
    };
    let mut keys = ns
        .keys
        .range((start, std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(_, e)| e.live(now));
    let page: Vec<(&String, &Entry)> = keys.by_ref().take(limit).collect();
    let cursor = match (keys.next(), page.last()) {
        (Some(_), Some((last, _))) => encode_cursor(last),
        _ => String::new(),
    };
    let result: Vec<Value> = page
        .iter()
        .map(|(name, entry)| {
            let mut key = json!({"name": name});
            if let Some(expiration) = entry.expiration {
                key["expiration"] = json!(expiration);
            }
            if let Some(metadata) = &entry.metadata {
                key["metadata"] = metadata.clone();
            }
            key
        })
        .collect();
    json(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result,
            "result_info": {"count": result.len(), "cursor": cursor}}),
    )
}

fn get_value(ns: &mut Namespace, key: &str, request: &Request) -> Response<Body> {
    match ns.keys.get(key).filter(|e| e.live(request.now())) {
        Some(entry) => {
            let mut headers = vec![("content-type", "application/octet-stream".to_string())];
            if let Some(expiration) = entry.expiration {
                headers.push(("expiration", expiration.to_string()));
            }
            respond(StatusCode::OK, &headers, entry.value.clone())
        }
        None => key_not_found(),
    }
}

fn get_metadata(ns: &mut Namespace, key: &str, request: &Request) -> Response<Body> {
    match ns.keys.get(key).filter(|e| e.live(request.now())) {
        Some(entry) => ok(entry.metadata.clone().unwrap_or(Value::Null)),
        None => key_not_found(),
    }
}

/// Reads a value write's body: raw, or the multipart form with `value` and `metadata`.
async fn read_write(request: &Request) -> Result<Write, Fail> {
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type.starts_with("multipart/form-data") {
        return Ok(Write {
            value: request.body.clone(),
            metadata: None,
        });
    }
    let bad = |e: multer::Error| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            10001,
            format!("invalid multipart body: {e}"),
        )
    };
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let body = request.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut write = Write {
        value: Bytes::new(),
        metadata: None,
    };
    let mut has_value = false;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("value") => {
                write.value = field.bytes().await.map_err(bad)?;
                has_value = true;
            }
            Some("metadata") => write.metadata = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    if !has_value {
        return Err(Fail::new(
            StatusCode::BAD_REQUEST,
            10001,
            "the form has no value part",
        ));
    }
    Ok(write)
}

/// Checks and resolves a write's expiration: `expiration_ttl` wins over `expiration`.
fn expiration_of(ttl: Option<&str>, at: Option<&str>, now: i64) -> Result<Option<i64>, Fail> {
    if let Some(ttl) = ttl {
        return match ttl.parse::<i64>() {
            Ok(ttl) if rules::ttl_allowed(ttl) => Ok(Some(now.saturating_add(ttl))),
            _ => Err(Fail::new(
                StatusCode::BAD_REQUEST,
                10020,
                format!("Invalid expiration_ttl of {ttl}. Expiration TTL must be at least 60."),
            )),
        };
    }
    match at.map(str::parse::<i64>) {
        None => Ok(None),
        Some(Ok(at)) if rules::expiration_allowed(at, now) => Ok(Some(at)),
        Some(_) => Err(Fail::new(
            StatusCode::BAD_REQUEST,
            10021,
            "Invalid expiration. Please specify integer greater than the current number of seconds since the UNIX epoch plus 60.",
        )),
    }
}

fn metadata_of(metadata: Option<&str>) -> Result<Option<Value>, Fail> {
    let Some(metadata) = metadata else {
        return Ok(None);
    };
    if !rules::metadata_fits(metadata) {
        return Err(Fail::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            10023,
            "metadata is larger than 1024 bytes",
        ));
    }
    serde_json::from_str(metadata)
        .map(Some)
        .map_err(|_| Fail::new(StatusCode::BAD_REQUEST, 10026, "metadata is not valid JSON"))
}

fn put_value(ns: &mut Namespace, request: &Request, write: Write, log: &mut Log) -> Response<Body> {
    with_key(ns, request, |ns, key, request| {
        if !rules::value_fits(write.value.len()) {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                10024,
                "value is larger than 25 MiB",
            );
        }
        let (ttl, at) = (request.query("expiration_ttl"), request.query("expiration"));
        let entry = expiration_of(ttl, at, request.now()).and_then(|expiration| {
            Ok(Entry {
                value: write.value,
                expiration,
                metadata: metadata_of(write.metadata.as_deref())?,
            })
        });
        match entry {
            Ok(entry) => {
                log.put(key, &entry);
                ns.keys.insert(key.to_string(), entry);
                ok(Value::Null)
            }
            Err(response) => response.respond(),
        }
    })
}

fn bulk_write(ns: &mut Namespace, request: &Request, log: &mut Log) -> Response<Body> {
    if request.body.len() > rules::BULK_WRITE_MAX_BODY_BYTES {
        return fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            10024,
            "the request is larger than 100 MB",
        );
    }
    let Ok(items) =
        serde_json::from_slice::<Vec<crate::cloudflare::raw::types::BulkWriteItem>>(&request.body)
    else {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "the body is not an array of key-value pairs",
        );
    };
    if items.len() > rules::BULK_WRITE_MAX_PAIRS {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "at most 10,000 pairs per request",
        );
    }
    let mut entries = Vec::with_capacity(items.len());
    for item in items {
        if let Err(response) = check_key(&item.key) {
            return response.respond();
        }
        if !rules::value_fits(item.value.len()) {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                10024,
                "value is larger than 25 MiB",
            );
        }
        let value = if item.base64 == Some(true) {
            match base64::engine::general_purpose::STANDARD.decode(&item.value) {
                Ok(value) => Bytes::from(value),
                Err(_) => {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        10001,
                        "a value is not valid base64",
                    );
                }
            }
        } else {
            Bytes::from(item.value)
        };
        let ttl = item.expiration_ttl.map(|t| t.to_string());
        let at = item.expiration.map(|e| e.to_string());
        let expiration = match expiration_of(ttl.as_deref(), at.as_deref(), request.now()) {
            Ok(expiration) => expiration,
            Err(response) => return response.respond(),
        };
        let metadata = item.metadata.map(|m| m.to_string());
        let metadata = match metadata_of(metadata.as_deref()) {
            Ok(metadata) => metadata,
            Err(response) => return response.respond(),
        };
        entries.push((
            item.key,
            Entry {
                value,
                expiration,
                metadata,
            },
        ));
    }
    let count = entries.len();
    for (key, entry) in &entries {
        log.put(key, entry);
    }
    ns.keys.extend(entries);
    ok(json!({"successful_key_count": count, "unsuccessful_keys": []}))
}

fn bulk_delete(ns: &mut Namespace, request: &Request, log: &mut Log) -> Response<Body> {
    let Ok(keys) = serde_json::from_slice::<Vec<String>>(&request.body) else {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "the body is not an array of keys",
        );
    };
    if keys.len() > rules::BULK_DELETE_MAX_KEYS {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "at most 10,000 keys per request",
        );
    }
    if let Some(fail) = keys.iter().find_map(|k| check_named_key(k).err()) {
        return fail.respond();
    }
    for key in &keys {
        if ns.keys.remove(key).is_some() {
            log.delete(key);
        }
    }
    ok(json!({"successful_key_count": keys.len(), "unsuccessful_keys": []}))
}

fn bulk_get(ns: &mut Namespace, request: &Request) -> Response<Body> {
    let Ok(body) =
        serde_json::from_slice::<crate::cloudflare::raw::types::BulkGetRequest>(&request.body)
    else {
        return fail(StatusCode::BAD_REQUEST, 10001, "the body must hold `keys`");
    };
    if body.keys.len() > rules::BULK_GET_MAX_KEYS {
        return fail(
            StatusCode::BAD_REQUEST,
            10001,
            "at most 100 keys per request",
        );
    }
    if let Some(fail) = body.keys.iter().find_map(|k| check_named_key(k).err()) {
        return fail.respond();
    }
    let as_json = body.type_ == Some(crate::cloudflare::raw::types::BulkGetType::Json);
    let with_metadata = body.with_metadata == Some(true);
    let now = request.now();
    let mut values = serde_json::Map::new();
    for key in body.keys {
        let Some(entry) = ns.keys.get(&key).filter(|e| e.live(now)) else {
            values.insert(key, Value::Null);
            continue;
        };
        let value = if as_json {
            match serde_json::from_slice::<Value>(&entry.value) {
                Ok(value) => value,
                Err(_) => {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        10001,
                        format!("the value of {key:?} is not JSON"),
                    );
                }
            }
        } else {
            Value::String(String::from_utf8_lossy(&entry.value).into_owned())
        };
        let value = if with_metadata {
            let mut with =
                json!({"value": value, "metadata": entry.metadata.clone().unwrap_or(Value::Null)});
            if let Some(expiration) = entry.expiration {
                with["expiration"] = json!(expiration);
            }
            with
        } else {
            value
        };
        values.insert(key, value);
    }
    ok(json!({"values": values}))
}

fn encode_cursor(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes).ok()
}
