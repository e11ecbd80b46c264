//! Fastly KV Store.

pub mod raw;
