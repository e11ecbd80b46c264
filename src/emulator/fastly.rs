//! The Fastly KV Store API, emulated: `specs/fastly-kv.yaml` with the live service's semantics.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Response, StatusCode};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

use super::persist::Record;
use super::rules::fastly as rules;
use super::{Request, Shared, json, respond};

#[derive(Default)]
pub(crate) struct State {
    stores: BTreeMap<String, Store>,
    last_generation: u64,
    /// Whether changes are logged (the emulator persists).
    pub(crate) journaling: bool,
    /// Changes made by the request being served, for the log.
    pub(crate) pending: Vec<Record>,
}

struct Store {
    name: String,
    created_at: String,
    items: BTreeMap<String, Item>,
}

struct Item {
    value: Bytes,
    generation: u64,
    metadata: String,
    /// UNIX seconds after which the item is gone.
    expires: Option<i64>,
}

impl Item {
    fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

impl State {
    /// A generation from a microsecond clock, as the service's are (above 2^32), always rising.
    fn next_generation(&mut self, now_micros: u64) -> u64 {
        self.last_generation = now_micros.max(self.last_generation + 1);
        self.last_generation
    }

    fn log(&mut self, record: impl FnOnce() -> Record) {
        if self.journaling {
            self.pending.push(record());
        }
    }

    fn log_store(&mut self, id: &str) {
        if let Some(store) = self.stores.get(id) {
            let record = Record::FastlyStore {
                id: id.to_string(),
                name: store.name.clone(),
                created_at: store.created_at.clone(),
            };
            self.log(|| record);
        }
    }

    fn log_put(&mut self, id: &str, key: &str) {
        if !self.journaling {
            return;
        }
        if let Some(item) = self.stores.get(id).and_then(|s| s.items.get(key)) {
            let record = Record::FastlyPut {
                store: id.to_string(),
                key: key.to_string(),
                value: item.value.clone(),
                generation: item.generation,
                metadata: Bytes::from(item.metadata.clone().into_bytes()),
                expires: item.expires,
            };
            self.pending.push(record);
        }
    }

    /// Applies a logged change (others' records are skipped).
    pub(crate) fn replay(&mut self, record: &Record) {
        match record {
            Record::FastlyStore {
                id,
                name,
                created_at,
            } => {
                let store = self.stores.entry(id.clone()).or_insert_with(|| Store {
                    name: String::new(),
                    created_at: String::new(),
                    items: BTreeMap::new(),
                });
                store.name = name.clone();
                store.created_at = created_at.clone();
            }
            Record::FastlyStoreDeleted { id } => {
                self.stores.remove(id);
            }
            Record::FastlyPut {
                store,
                key,
                value,
                generation,
                metadata,
                expires,
            } => {
                self.last_generation = self.last_generation.max(*generation);
                if let Some(store) = self.stores.get_mut(store) {
                    let item = Item {
                        value: value.clone(),
                        generation: *generation,
                        metadata: String::from_utf8_lossy(metadata).into_owned(),
                        expires: *expires,
                    };
                    store.items.insert(key.clone(), item);
                }
            }
            Record::FastlyDelete { store, key } => {
                if let Some(store) = self.stores.get_mut(store) {
                    store.items.remove(key);
                }
            }
            _ => {}
        }
    }

    /// The state as records, for a compacted log.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for (id, store) in &self.stores {
            records.push(Record::FastlyStore {
                id: id.clone(),
                name: store.name.clone(),
                created_at: store.created_at.clone(),
            });
            for (key, item) in &store.items {
                records.push(Record::FastlyPut {
                    store: id.clone(),
                    key: key.clone(),
                    value: item.value.clone(),
                    generation: item.generation,
                    metadata: Bytes::from(item.metadata.clone().into_bytes()),
                    expires: item.expires,
                });
            }
        }
        records
    }

    /// Writes entries as the emulator's seeding does: new generations, no metadata, no TTL.
    pub(crate) fn seed(
        &mut self,
        id: &str,
        entries: impl Iterator<Item = (String, Bytes)>,
        now_micros: u64,
    ) -> std::io::Result<()> {
        if !self.stores.contains_key(id) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no Fastly store {id:?}"),
            ));
        }
        for (key, value) in entries {
            rules::check_key(&key).map_err(|problem| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, problem.to_string())
            })?;
            let generation = self.next_generation(now_micros);
            let item = Item {
                value,
                generation,
                metadata: String::new(),
                expires: None,
            };
            if let Some(store) = self.stores.get_mut(id) {
                store.items.insert(key.clone(), item);
            }
            self.log_put(id, &key);
        }
        Ok(())
    }
}

pub(crate) fn serve(shared: &Shared, request: Request) -> Response<Body> {
    let token = request.header("fastly-key").unwrap_or_default();
    if !shared.config.fastly_tokens.iter().any(|t| t == token) {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"msg": "Provided credentials are missing or invalid"}),
        );
    }
    let mut state = shared.fastly();
    // Segments: resources, stores, kv, {store_id}, keys|batch, {key}
    let parts: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let response = match (&request.method, &parts[3.min(parts.len())..]) {
        (&Method::GET, []) => list_stores(&state, &request),
        (&Method::POST, []) => create_store(shared, &mut state, &request),
        (&Method::GET, [_]) => with_store(&mut state, &request, |id, store| {
            json(StatusCode::OK, details(id, store))
        }),
        (&Method::PUT, [_]) => rename_store(&mut state, &request),
        (&Method::DELETE, [_]) => delete_store(&mut state, &request),
        (&Method::GET, [_, "keys"]) => {
            with_store(&mut state, &request, |_, store| list_keys(store, &request))
        }
        (&Method::GET, [_, "keys", _]) => get_item(&mut state, &request),
        (&Method::PUT, [_, "keys", _]) => put_item(&mut state, &request),
        (&Method::DELETE, [_, "keys", _]) => delete_item(&mut state, &request),
        (&Method::PUT, [_, "batch"]) => batch(&mut state, &request),
        (_, []) => super::method_not_allowed("GET, POST"),
        (_, [_] | [_, "keys", _]) => super::method_not_allowed("GET, PUT, DELETE"),
        (_, [_, "keys"]) => super::method_not_allowed("GET"),
        (_, [_, "batch"]) => super::method_not_allowed("PUT"),
        _ => json(StatusCode::NOT_FOUND, json!({"msg": "Record not found"})),
    };
    // Durable before it is answered, and in the state's order (the lock is still held).
    match shared.persist(&mut state.pending) {
        Ok(()) => response,
        Err(error) => super::not_persisted(&error),
    }
}

fn details(id: &str, store: &Store) -> serde_json::Value {
    json!({"id": id, "name": store.name, "created_at": store.created_at, "updated_at": store.created_at})
}

fn with_store(
    state: &mut State,
    request: &Request,
    f: impl FnOnce(&str, &Store) -> Response<Body>,
) -> Response<Body> {
    let id = request.decoded(3).unwrap_or_default();
    match state.stores.get(&id) {
        Some(store) => f(&id, store),
        None => respond(StatusCode::NOT_FOUND, &[], Bytes::new()),
    }
}

/// The non-empty `name` of a create or rename body.
fn name_of(request: &Request) -> Option<String> {
    let body = serde_json::from_slice::<serde_json::Value>(&request.body).ok()?;
    body.get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

fn list_stores(state: &State, request: &Request) -> Response<Body> {
    let limit = request
        .query("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .max(1);
    let after = request.query("cursor").and_then(decode_cursor);
    let mut stores: Vec<(&String, &Store)> = state.stores.iter().collect();
    if let Some(name) = request.query("name") {
        stores.retain(|(_, s)| s.name == name);
    }
    let total = stores.len();
    let start = after.map_or(0, |after| {
        stores
            .iter()
            .position(|(id, _)| **id > after)
            .unwrap_or(stores.len())
    });
    let page: Vec<_> = stores[start..].iter().take(limit).collect();
    let mut meta = json!({"limit": limit, "total": total});
    if start + page.len() < stores.len()
        && let Some((last, _)) = page.last()
    {
        meta["next_cursor"] = json!(encode_cursor(last));
    }
    let data: Vec<_> = page.iter().map(|(id, store)| details(id, store)).collect();
    json(StatusCode::OK, json!({"data": data, "meta": meta}))
}

fn create_store(shared: &Shared, state: &mut State, request: &Request) -> Response<Body> {
    let Some(name) = name_of(request) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"msg": "Bad request", "detail": "name is required"}),
        );
    };
    if state.stores.values().any(|s| s.name == name) {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"msg": "Bad request", "detail": "name already exists"}),
        );
    }
    if let Some(location) = request.query("location")
        && !["US", "EU", "ASIA", "AUS"].contains(&location)
    {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"msg": "Bad request", "detail": "invalid location"}),
        );
    }
    let id = super::random_id(shared, 22, b"abcdefghijklmnopqrstuvwxyz0123456789");
    let store = Store {
        name,
        created_at: timestamp(request.now()),
        items: BTreeMap::new(),
    };
    let body = details(&id, &store);
    state.stores.insert(id.clone(), store);
    state.log_store(&id);
    json(StatusCode::CREATED, body)
}

fn rename_store(state: &mut State, request: &Request) -> Response<Body> {
    let id = request.decoded(3).unwrap_or_default();
    let Some(name) = name_of(request) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"msg": "Bad request", "detail": "name is required"}),
        );
    };
    match state.stores.get_mut(&id) {
        Some(store) => {
            store.name = name;
            state.log_store(&id);
            respond(StatusCode::OK, &[], Bytes::new())
        }
        None => respond(StatusCode::NOT_FOUND, &[], Bytes::new()),
    }
}

fn delete_store(state: &mut State, request: &Request) -> Response<Body> {
    let id = request.decoded(3).unwrap_or_default();
    let now = request.now();
    match state.stores.get(&id) {
        None => respond(StatusCode::NOT_FOUND, &[], Bytes::new()),
        Some(store) if store.items.values().any(|i| i.live(now)) => json(
            StatusCode::CONFLICT,
            json!({"msg": "Conflict", "detail": "store is not empty"}),
        ),
        Some(_) => {
            state.stores.remove(&id);
            state.log(|| Record::FastlyStoreDeleted { id });
            respond(StatusCode::NO_CONTENT, &[], Bytes::new())
        }
    }
}

fn list_keys(store: &Store, request: &Request) -> Response<Body> {
    let limit = request
        .query("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(1000)
        .max(1);
    let prefix = request.query("prefix").unwrap_or_default();
    let after = request.query("cursor").and_then(decode_cursor);
    let now = request.now();
    // From whichever is later, the cursor (exclusive) or the prefix, while keys share the prefix.
    let start = match &after {
        Some(after) if after.as_str() >= prefix => std::ops::Bound::Excluded(after.clone()),
        _ => std::ops::Bound::Included(prefix.to_string()),
    };
    let mut keys = store
        .items
        .range((start, std::ops::Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(_, item)| item.live(now))
        .map(|(k, _)| k.clone());
    let page: Vec<String> = keys.by_ref().take(limit).collect();
    let mut meta = json!({"limit": limit});
    if !prefix.is_empty() {
        meta["prefix"] = json!(prefix);
    }
    if request.query("consistency") == Some("eventual") {
        meta["consistency"] = json!("eventual");
    }
    if keys.next().is_some()
        && let Some(last) = page.last()
    {
        meta["next_cursor"] = json!(encode_cursor(last));
    }
    json(StatusCode::OK, json!({"data": page, "meta": meta}))
}

fn get_item(state: &mut State, request: &Request) -> Response<Body> {
    let (id, key) = (
        request.decoded(3).unwrap_or_default(),
        request.decoded(5).unwrap_or_default(),
    );
    let now = request.now();
    let item = state
        .stores
        .get(&id)
        .and_then(|s| s.items.get(&key))
        .filter(|i| i.live(now));
    match item {
        Some(item) => respond(
            StatusCode::OK,
            &[
                ("content-type", "application/octet-stream".into()),
                ("generation", item.generation.to_string()),
                ("metadata", item.metadata.clone()),
                ("stored-content-length", item.value.len().to_string()),
            ],
            item.value.clone(),
        ),
        None => respond(StatusCode::NOT_FOUND, &[], Bytes::new()),
    }
}

fn put_item(state: &mut State, request: &Request) -> Response<Body> {
    let id = request.decoded(3).unwrap_or_default();
    // The key's bytes, not a lossy decoding: a key that is not UTF-8 is refused, not altered.
    let raw_key = request.decoded_bytes(5).unwrap_or_default();
    let key = match rules::key_from_bytes(&raw_key) {
        Ok(key) => key.to_string(),
        Err(problem) => {
            return json(
                StatusCode::BAD_REQUEST,
                json!({"msg": "Bad request", "detail": problem.to_string()}),
            );
        }
    };
    // Measured as sent: a header may carry bytes that are not visible ASCII.
    let metadata = request
        .headers
        .get("metadata")
        .map(|m| m.as_bytes())
        .unwrap_or_default();
    if !rules::metadata_fits(metadata) {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"msg": "Bad request", "detail": "metadata too large"}),
        );
    }
    let metadata = String::from_utf8_lossy(metadata).into_owned();
    if !rules::value_fits(request.body.len()) {
        return json(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"msg": "Payload too large"}),
        );
    }
    let ttl = request
        .header("time_to_live_sec")
        .and_then(|t| t.parse::<i64>().ok());
    // A precondition that is not a generation is refused, whether or not the key exists: read
    // as "no precondition" it would turn a guarded write into an unconditional one.
    let expected = match request.header("if-generation-match") {
        None => None,
        Some(g) => match g.parse::<u64>() {
            Ok(generation) => Some(generation),
            Err(_) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    json!({"msg": "Bad request", "detail": "if-generation-match is not a generation"}),
                );
            }
        },
    };
    let flag = |name: &str| request.query(name) == Some("true");
    let now = request.now();
    let generation = state.next_generation(request.now_micros);
    let Some(store) = state.stores.get_mut(&id) else {
        return respond(StatusCode::NOT_FOUND, &[], Bytes::new());
    };
    let current = store.items.get(&key).filter(|i| i.live(now));
    let precondition_failed = match expected {
        Some(expected) => current.map(|i| i.generation) != Some(expected),
        None => flag("add") && current.is_some(),
    };
    if precondition_failed {
        return respond(StatusCode::PRECONDITION_FAILED, &[], Bytes::new());
    }
    let value = match current {
        Some(item) if flag("append") => {
            [item.value.as_ref(), request.body.as_ref()].concat().into()
        }
        Some(item) if flag("prepend") => {
            [request.body.as_ref(), item.value.as_ref()].concat().into()
        }
        _ => request.body.clone(),
    };
    let item = Item {
        value,
        generation,
        metadata,
        expires: ttl.map(|t| now.saturating_add(t)),
    };
    store.items.insert(key.clone(), item);
    state.log_put(&id, &key);
    respond(StatusCode::OK, &[], Bytes::new())
}

fn delete_item(state: &mut State, request: &Request) -> Response<Body> {
    let (id, key) = (
        request.decoded(3).unwrap_or_default(),
        request.decoded(5).unwrap_or_default(),
    );
    let now = request.now();
    let Some(store) = state.stores.get_mut(&id) else {
        return respond(StatusCode::NOT_FOUND, &[], Bytes::new());
    };
    let current = store.items.get(&key).filter(|i| i.live(now));
    if let Some(expected) = request.header("if-generation-match")
        && current.map(|i| i.generation.to_string()).as_deref() != Some(expected)
    {
        return respond(StatusCode::PRECONDITION_FAILED, &[], Bytes::new());
    }
    let removed = store.items.remove(&key);
    if removed.is_some() {
        state.log(|| Record::FastlyDelete {
            store: id.clone(),
            key: key.clone(),
        });
    }
    match removed.filter(|i| i.live(now)) {
        Some(_) => respond(StatusCode::NO_CONTENT, &[], Bytes::new()),
        None if request.query("force") == Some("true") => {
            respond(StatusCode::NO_CONTENT, &[], Bytes::new())
        }
        None => respond(StatusCode::NOT_FOUND, &[], Bytes::new()),
    }
}

fn batch(state: &mut State, request: &Request) -> Response<Body> {
    let id = request.decoded(3).unwrap_or_default();
    if !state.stores.contains_key(&id) {
        return json(
            StatusCode::NOT_FOUND,
            json!({"type": "not-found", "title": "store not found", "errors": []}),
        );
    }
    let now = request.now();
    let mut errors = Vec::new();
    let lines = request
        .body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    for (index, line) in lines.enumerate() {
        let parsed: Result<crate::fastly::raw::types::KvStoreUpsertBatch, String> =
            serde_json::from_slice(line).map_err(|e| format!("invalid line: {e}"));
        let outcome = parsed.and_then(|entry| {
            rules::check_key(&entry.key).map_err(|e| e.to_string())?;
            let value = base64::engine::general_purpose::STANDARD
                .decode(&entry.value)
                .map_err(|e| format!("value is not base64: {e}"))?;
            if !rules::value_fits(value.len()) {
                return Err("value too large".to_string());
            }
            let metadata = entry.metadata.unwrap_or_default();
            if !rules::metadata_fits(metadata.as_bytes()) {
                return Err("metadata too large".to_string());
            }
            Ok((entry.key, value, metadata, entry.time_to_live_sec))
        });
        match outcome {
            Ok((key, value, metadata, ttl)) => {
                let generation = state.next_generation(request.now_micros);
                let expires = ttl.map(|t| now + i64::from(t));
                let item = Item {
                    value: value.into(),
                    generation,
                    metadata,
                    expires,
                };
                if let Some(store) = state.stores.get_mut(&id) {
                    store.items.insert(key.clone(), item);
                }
                state.log_put(&id, &key);
            }
            Err(reason) => {
                let key = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_string))
                    .unwrap_or_default();
                errors.push(json!({"key": key, "index": index, "code": "400", "reason": reason}));
            }
        }
    }
    if errors.is_empty() {
        json(
            StatusCode::OK,
            json!({"type": "", "title": "success", "errors": []}),
        )
    } else {
        json(
            StatusCode::BAD_REQUEST,
            json!({"type": "batch-errors", "title": "some items were not written", "errors": errors}),
        )
    }
}

/// Cursors are opaque to callers; like the live service's, they are base64 with padding.
fn encode_cursor(last: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(last)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `2025-06-23 19:41:15`, the format the live service answers with.
fn timestamp(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_match_the_live_format() {
        assert_eq!(super::timestamp(1_750_707_675), "2025-06-23 19:41:15");
        assert_eq!(super::timestamp(0), "1970-01-01 00:00:00");
    }
}
