//! Cloudflare Workers KV.

pub mod raw;
