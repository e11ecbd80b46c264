//! Cloudflare's answer envelope (`success`, `errors`, `messages`, `result`), written once: the
//! suites build every JSON answer of the service from these, so a change to its shape is one
//! edit.

use serde_json::{Value, json};

/// A successful envelope around `result`.
pub fn cf_ok(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

/// A successful envelope around one page of a listing, with its `result_info`.
pub fn cf_page(result: Value, result_info: Value) -> Value {
    let mut envelope = cf_ok(result);
    envelope["result_info"] = result_info;
    envelope
}

/// A failure envelope with one error.
pub fn cf_failure(code: i64, message: &str) -> Value {
    cf_failures(&[(code, message)])
}

/// A failure envelope with every error of `errors`, in order.
pub fn cf_failures(errors: &[(i64, &str)]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|(code, message)| json!({"code": code, "message": message}))
        .collect();
    json!({"success": false, "errors": errors, "messages": [], "result": null})
}

/// The service's answer to a read of a key that does not exist (with status 404).
pub fn cf_key_not_found() -> Value {
    cf_failure(10009, "get: 'key not found'")
}

/// The service's answer to a call on a namespace that does not exist (with status 404).
pub fn cf_namespace_not_found() -> Value {
    cf_failure(10013, "namespace not found")
}
