//! Checks a spec beyond what parsing does: what reviewers and progenitor need.
//!
//! The trap rules come from `../shared/PROGENITOR.md` (measured on progenitor 0.15): each names a
//! spec shape that progenitor turns into wrong or bloated code without an error.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every problem found in the spec, one line each.
pub fn lint(spec_path: &Path) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let doc: Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    let mut problems = Vec::new();

    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !version.starts_with("3.0.") {
        problems.push(format!(
            "openapi is {version:?}: progenitor takes OpenAPI 3.0 only"
        ));
    }

    let mut ids = BTreeSet::new();
    let paths = doc
        .get("paths")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for (path, item) in &paths {
        let path = path.as_str().unwrap_or_default();
        if item.get("$ref").is_some() {
            problems.push(format!(
                "{path}: path-item $ref is not supported by progenitor"
            ));
        }
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let here = format!("{} {path}", method.to_uppercase());
            match op.get("operationId").and_then(Value::as_str) {
                None => problems.push(format!("{here}: no operationId")),
                Some(id) if !ids.insert(id.to_string()) => {
                    problems.push(format!("{here}: operationId {id} is used twice"))
                }
                Some(_) => {}
            }
            for field in ["summary", "description"] {
                if op
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    problems.push(format!("{here}: no {field}"));
                }
            }
            let params = item
                .get("parameters")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten();
            let op_params = op
                .get("parameters")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten();
            for param in params.chain(op_params) {
                lint_parameter(&doc, &here, resolve(&doc, param), &mut problems);
            }
            lint_request_body(&here, op, &mut problems);
            // progenitor never sees a hand-written operation, so its response kinds may mix.
            if op.get("x-edgekv-handwritten").and_then(Value::as_bool) != Some(true) {
                lint_responses(&doc, &here, op, &mut problems);
            }
        }
    }

    let refs = collect_refs(&doc);
    let schemes_used = collect_security_schemes(&doc);
    let components = doc
        .get("components")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    for (kind, entries) in &components {
        let kind = kind.as_str().unwrap_or_default();
        for (name, entry) in entries.as_mapping().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            let used = if kind == "securitySchemes" {
                schemes_used.contains(name)
            } else {
                refs.contains(&format!("#/components/{kind}/{name}"))
            };
            if !used {
                problems.push(format!("components/{kind}/{name} is never used"));
            }
            if entry
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                problems.push(format!("components/{kind}/{name}: no description"));
            }
        }
    }
    Ok(problems)
}

fn lint_parameter(doc: &Value, here: &str, param: &Value, problems: &mut Vec<String>) {
    let name = param.get("name").and_then(Value::as_str).unwrap_or("?");
    let location = param.get("in").and_then(Value::as_str).unwrap_or("?");
    if param
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push(format!("{here}: parameter {name} has no description"));
    }
    let schema = param
        .get("schema")
        .map(|s| resolve(doc, s))
        .cloned()
        .unwrap_or_default();
    let kind = schema
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if location == "query" && kind == "number" {
        problems.push(format!(
            "{here}: query parameter {name} is `type: number` (sent as `10.0`): use integer"
        ));
    }
    if location == "path" && (schema.get("maxLength").is_some() || schema.get("pattern").is_some())
    {
        problems.push(format!(
            "{here}: path parameter {name} has maxLength/pattern (a newtype per operation): \
             describe the limit and check it in the facade"
        ));
    }
    if location == "cookie" {
        problems.push(format!(
            "{here}: cookie parameter {name} is not supported by progenitor"
        ));
    }
}

fn lint_request_body(here: &str, op: &Value, problems: &mut Vec<String>) {
    let Some(content) = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_mapping)
    else {
        return;
    };
    let handwritten = op.get("x-edgekv-handwritten").and_then(Value::as_bool) == Some(true);
    let types: Vec<&str> = content.keys().filter_map(Value::as_str).collect();
    let generated: Vec<&&str> = types
        .iter()
        .filter(|t| **t != "multipart/form-data")
        .collect();
    if !handwritten && generated.len() != 1 {
        problems.push(format!(
            "{here}: request body media types {types:?}: progenitor takes exactly one \
             (multipart/form-data is dropped by transform T2)"
        ));
    }
    if !handwritten
        && op
            .get("requestBody")
            .and_then(|b| b.get("required"))
            .and_then(Value::as_bool)
            != Some(true)
    {
        problems.push(format!(
            "{here}: request body not `required: true` (progenitor always requires it)"
        ));
    }
}

fn lint_responses(doc: &Value, here: &str, op: &Value, problems: &mut Vec<String>) {
    let Some(responses) = op.get("responses").and_then(Value::as_mapping) else {
        problems.push(format!("{here}: no responses"));
        return;
    };
    let mut success_kinds = BTreeSet::new();
    let mut error_kinds = BTreeSet::new();
    for (status, response) in responses {
        let status = match status {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let response = resolve(doc, response);
        let content = response.get("content").and_then(Value::as_mapping);
        let kind = match content {
            None => "empty".to_string(),
            Some(content) => {
                for (media, body) in content {
                    let media = media.as_str().unwrap_or_default();
                    match body.get("schema") {
                        None => problems.push(format!("{here}: {status} {media} has no schema")),
                        Some(schema) if media.contains("json") && schema.get("$ref").is_none() => problems.push(
                            format!("{here}: {status} JSON schema is inline: use a $ref (progenitor drops a second inline one)"),
                        ),
                        Some(_) => {}
                    }
                }
                let mut kind: Vec<String> = content
                    .keys()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect();
                if let Some(schema) = content
                    .values()
                    .next()
                    .and_then(|b| b.get("schema"))
                    .and_then(|s| s.get("$ref"))
                    .and_then(Value::as_str)
                {
                    kind.push(schema.to_string());
                }
                kind.join(" ")
            }
        };
        if status.starts_with('2') {
            success_kinds.insert(kind);
        } else {
            error_kinds.insert(kind);
        }
    }
    if success_kinds.len() > 1 {
        problems.push(format!(
            "{here}: success responses of different kinds {success_kinds:?} (progenitor panics)"
        ));
    }
    if error_kinds.len() > 1 {
        problems.push(format!(
            "{here}: error responses of different kinds {error_kinds:?} (progenitor panics)"
        ));
    }
}

/// Follows a local `$ref` once (parameters and responses).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
        return value;
    };
    let mut target = doc;
    for part in reference.trim_start_matches("#/").split('/') {
        match target.get(part) {
            Some(next) => target = next,
            None => return value,
        }
    }
    target
}

fn collect_refs(value: &Value) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Mapping(map) => {
                for (key, child) in map {
                    if key.as_str() == Some("$ref")
                        && let Some(r) = child.as_str()
                    {
                        refs.insert(r.to_string());
                    }
                    stack.push(child);
                }
            }
            Value::Sequence(items) => stack.extend(items),
            _ => {}
        }
    }
    refs
}

fn collect_security_schemes(doc: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let top = doc.get("security").into_iter();
    let paths = doc
        .get("paths")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten();
    let per_op = paths.flat_map(|(_, item)| {
        METHODS
            .iter()
            .filter_map(move |m| item.get(*m)?.get("security"))
    });
    for requirements in top.chain(per_op) {
        for requirement in requirements.as_sequence().into_iter().flatten() {
            for name in requirement
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                names.extend(name.as_str().map(String::from));
            }
        }
    }
    names
}
