//! The services' rules as their documentation states them, kept apart from the facades'
//! `limits.rs`: a rule the emulator shared with a facade could never catch that facade's mistake,
//! it would repeat it. Nothing here may come from `crate::fastly` or `crate::cloudflare`.
//!
//! Sources, named at each rule (paths outside the crate are in the project's `shared/` folder):
//! - `seeds/`: Fastly's KV store and item API docs, Cloudflare's KV HTTP API reference and Python
//!   SDK docs;
//! - `conformance/` (see its `SOURCES.md`): Fastly's 2023 OpenAPI and the operation list compiled
//!   from Fastly's SDKs, Cloudflare's official KV schema as patched to the current API;
//! - the crate's `specs/README.md` ("Limits"), where the project recorded the units and the
//!   source of the Fastly key rules: the Fastly Compute Rust SDK documentation of `KVStore`
//!   (docs.rs/fastly), "Keys in the KV Store must follow the following rules".

/// Fastly KV Store.
pub(crate) mod fastly {
    use std::fmt;

    /// Fastly's API rate limit counts only requests that change something: "1,000 non-read
    /// requests per hour" (Fastly's API rate-limiting documentation, as issue 14 records it);
    /// `GET` and `HEAD` are not counted.
    pub(crate) fn counts_toward_budget(method: &str) -> bool {
        !matches!(method, "GET" | "HEAD")
    }

    /// docs.rs/fastly `KVStore`: "length 1-1024 bytes when UTF-8 encoded" (bytes, not characters,
    /// as specs/README.md records).
    pub(crate) const KEY_MAX_BYTES: usize = 1024;
    /// docs.rs/fastly `KVStore`: "Keys cannot start with `.well-known/acme-challenge/`".
    pub(crate) const RESERVED_KEY_PREFIX: &str = ".well-known/acme-challenge/";
    /// conformance/fastly/fastly-kv.openapi-2023.yaml, header `metadata`: "up to 2000B of data";
    /// conformance/fastly/fastly-kv-ops-from-sdks.yaml (fastly-py): "<=2000 bytes", for the item
    /// write and for each batch line.
    pub(crate) const METADATA_MAX_BYTES: usize = 2000;
    /// specs/README.md, "Limits": 25,000,000 bytes, decimal megabytes. The seeds and the
    /// conformance material state no value size for Fastly.
    pub(crate) const VALUE_MAX_BYTES: usize = 25_000_000;

    /// Why a key is refused; its `Display` is the `detail` of the 400 answer.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) enum KeyRefusal {
        /// "length 1-1024 bytes".
        Empty,
        TooLong {
            len: usize,
        },
        /// "any sequence of valid Unicode characters": a key arrives percent-encoded in the path,
        /// so its bytes can be anything.
        NotUtf8,
        /// "Keys cannot be named `.` or `..`".
        DotSegment,
        ReservedPrefix,
        /// "Keys cannot contain Carriage Return or Line Feed characters"; `position` is a byte
        /// offset. Other control characters are not forbidden by that list, so they pass.
        LineBreak {
            position: usize,
        },
    }

    impl fmt::Display for KeyRefusal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                KeyRefusal::Empty => write!(f, "key is empty"),
                KeyRefusal::TooLong { len } => {
                    write!(f, "key is {len} bytes, longer than {KEY_MAX_BYTES}")
                }
                KeyRefusal::NotUtf8 => write!(f, "key is not valid UTF-8"),
                KeyRefusal::DotSegment => write!(f, "key may not be `.` or `..`"),
                KeyRefusal::ReservedPrefix => {
                    write!(f, "key may not start with `{RESERVED_KEY_PREFIX}`")
                }
                KeyRefusal::LineBreak { position } => {
                    write!(f, "key contains CR or LF at byte {position}")
                }
            }
        }
    }

    /// Checks a key given as the bytes it decodes to, and returns it as text.
    pub(crate) fn key_from_bytes(bytes: &[u8]) -> Result<&str, KeyRefusal> {
        let key = std::str::from_utf8(bytes).map_err(|_| KeyRefusal::NotUtf8)?;
        check_key(key)?;
        Ok(key)
    }

    pub(crate) fn check_key(key: &str) -> Result<(), KeyRefusal> {
        if key.is_empty() {
            return Err(KeyRefusal::Empty);
        }
        if key.len() > KEY_MAX_BYTES {
            return Err(KeyRefusal::TooLong { len: key.len() });
        }
        if key == "." || key == ".." {
            return Err(KeyRefusal::DotSegment);
        }
        if key.starts_with(RESERVED_KEY_PREFIX) {
            return Err(KeyRefusal::ReservedPrefix);
        }
        if let Some(position) = key.bytes().position(|b| b == b'\r' || b == b'\n') {
            return Err(KeyRefusal::LineBreak { position });
        }
        Ok(())
    }

    pub(crate) fn metadata_fits(metadata: &[u8]) -> bool {
        metadata.len() <= METADATA_MAX_BYTES
    }

    pub(crate) fn value_fits(len: usize) -> bool {
        len <= VALUE_MAX_BYTES
    }
}

/// Cloudflare Workers KV.
pub(crate) mod cloudflare {
    use std::fmt;

    /// Cloudflare's API rate limit, "1,200 requests per five minutes per user", counts every
    /// request (Cloudflare's API rate-limit documentation, as issue 14 records it); past it the
    /// API answers 429 with code 971, "Please wait and consider throttling your request speed".
    pub(crate) fn counts_toward_budget(_method: &str) -> bool {
        true
    }

    /// The code of Cloudflare's rate-limit refusal.
    pub(crate) const RATE_LIMITED_CODE: i64 = 971;

    /// seeds/cloudflare-kv-http-api.md and cloudflare-kv-python-sdk.md, every `key_name`: "The
    /// name may be at most 512 bytes"; conformance/cloudflare/workers-kv.openapi.patched.yaml,
    /// `workers-kv_key_name` and `workers-kv_key_name_bulk` (`maxLength: 512`, described in bytes).
    pub(crate) const KEY_MAX_BYTES: usize = 512;
    /// seeds (value PUT and bulk write): "up to 25 MiB in length"; the patched OpenAPI's bulk
    /// `value` has `maxLength: 26214400`.
    pub(crate) const VALUE_MAX_BYTES: usize = 25 * 1024 * 1024;
    /// specs/README.md, "Limits": 1024 bytes of JSON, serialized. Not stated in the seeds or the
    /// conformance schema (they say only "Arbitrary JSON").
    pub(crate) const METADATA_MAX_BYTES: usize = 1024;
    /// seeds, `expiration_ttl`: "Must be at least 60"; patched OpenAPI (P3): `minimum: 60`.
    pub(crate) const MIN_EXPIRATION_TTL: i64 = 60;
    /// seeds, bulk write: "Body should be an array of up to 10,000 key-value pairs".
    pub(crate) const BULK_WRITE_MAX_PAIRS: usize = 10_000;
    /// seeds, bulk write: "The entire request size must be 100 megabytes or less" (decimal).
    pub(crate) const BULK_WRITE_MAX_BODY_BYTES: usize = 100_000_000;
    /// seeds, bulk delete: "Body should be an array of up to 10,000 keys to be removed".
    pub(crate) const BULK_DELETE_MAX_KEYS: usize = 10_000;
    /// seeds, bulk get: "Retrieve up to 100 KV pairs", `keys` "(maximum of 100)"; patched
    /// OpenAPI (P1): `maxItems: 100`.
    pub(crate) const BULK_GET_MAX_KEYS: usize = 100;

    /// Why a key is refused.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) enum KeyRefusal {
        Empty,
        /// Cloudflare's KV docs (developers.cloudflare.com/kv/api/write-key-value-pairs): "A key
        /// cannot be empty, have a `.` or `..`"; specs/README.md, "Limits". A URL cannot carry
        /// these, but a bulk body can.
        DotSegment,
        TooLong {
            len: usize,
        },
    }

    impl fmt::Display for KeyRefusal {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                KeyRefusal::Empty => write!(f, "key name is empty"),
                KeyRefusal::DotSegment => write!(f, "key name may not be `.` or `..`"),
                KeyRefusal::TooLong { .. } => {
                    write!(f, "key name is longer than {KEY_MAX_BYTES} bytes")
                }
            }
        }
    }

    /// Every other key is valid: the same page goes on "All other keys are valid", and the seeds'
    /// "All printable, non-whitespace characters are valid" forbids nothing else.
    pub(crate) fn check_key(key: &str) -> Result<(), KeyRefusal> {
        if key.is_empty() {
            return Err(KeyRefusal::Empty);
        }
        if key == "." || key == ".." {
            return Err(KeyRefusal::DotSegment);
        }
        if key.len() > KEY_MAX_BYTES {
            return Err(KeyRefusal::TooLong { len: key.len() });
        }
        Ok(())
    }

    pub(crate) fn ttl_allowed(ttl: i64) -> bool {
        ttl >= MIN_EXPIRATION_TTL
    }

    /// An absolute `expiration` must be at least `MIN_EXPIRATION_TTL` seconds ahead. The seeds
    /// and the schema give no floor for it; this is the emulator's long-standing reading (its
    /// 10021 message says "plus 60"), kept, and weaker evidence than the rules above.
    pub(crate) fn expiration_allowed(at: i64, now: i64) -> bool {
        at >= now.saturating_add(MIN_EXPIRATION_TTL)
    }

    /// `serialized` is the metadata as sent: the multipart part, or the bulk item re-serialized.
    pub(crate) fn metadata_fits(serialized: &str) -> bool {
        serialized.len() <= METADATA_MAX_BYTES
    }

    pub(crate) fn value_fits(len: usize) -> bool {
        len <= VALUE_MAX_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::{cloudflare, fastly};

    #[test]
    fn fastly_keys_follow_the_documented_list() {
        use fastly::KeyRefusal::*;
        let check = fastly::check_key;
        assert_eq!(check(""), Err(Empty));
        assert_eq!(check(&"a".repeat(1024)), Ok(()));
        assert_eq!(check(&"a".repeat(1025)), Err(TooLong { len: 1025 }));
        // Bytes, not characters: 512 two-byte characters fit, one more does not.
        assert_eq!(check(&"é".repeat(512)), Ok(()));
        assert_eq!(check(&"é".repeat(513)), Err(TooLong { len: 1026 }));
        assert_eq!(check("."), Err(DotSegment));
        assert_eq!(check(".."), Err(DotSegment));
        assert_eq!(check("..."), Ok(()));
        assert_eq!(check("./"), Ok(()));
        assert_eq!(check(".well-known/acme-challenge/"), Err(ReservedPrefix));
        assert_eq!(check(".well-known/acme-challenge/t"), Err(ReservedPrefix));
        assert_eq!(check(".well-known/acme-challenge"), Ok(()));
        assert_eq!(check("x.well-known/acme-challenge/"), Ok(()));
        assert_eq!(check("a\rb"), Err(LineBreak { position: 1 }));
        assert_eq!(check("éa\n"), Err(LineBreak { position: 3 }));
        // Only CR and LF are listed; the facade's wider control-character rule is its own.
        assert_eq!(check("a\tb\u{1}c\u{7f}"), Ok(()));
        assert_eq!(check("a b/c?d#e%f"), Ok(()));
    }

    #[test]
    fn fastly_keys_must_decode_to_utf8() {
        assert_eq!(fastly::key_from_bytes(b"ok"), Ok("ok"));
        assert_eq!(
            fastly::key_from_bytes(b"\xff"),
            Err(fastly::KeyRefusal::NotUtf8)
        );
        assert_eq!(
            fastly::key_from_bytes(b".."),
            Err(fastly::KeyRefusal::DotSegment)
        );
    }

    #[test]
    fn fastly_sizes_are_inclusive_limits() {
        assert!(fastly::metadata_fits(&[b'm'; 2000]));
        assert!(!fastly::metadata_fits(&[b'm'; 2001]));
        assert!(fastly::value_fits(25_000_000));
        assert!(!fastly::value_fits(25_000_001));
    }

    #[test]
    fn cloudflare_keys_follow_the_documented_list() {
        use cloudflare::KeyRefusal::*;
        let check = cloudflare::check_key;
        assert_eq!(check(""), Err(Empty));
        assert_eq!(check("."), Err(DotSegment));
        assert_eq!(check(".."), Err(DotSegment));
        assert_eq!(check("..."), Ok(()));
        assert_eq!(check(&"k".repeat(512)), Ok(()));
        assert_eq!(check(&"k".repeat(513)), Err(TooLong { len: 513 }));
        // 170 three-byte characters and two ASCII ones are 512 bytes; 171 are 513.
        assert_eq!(check(&("€".repeat(170) + "aa")), Ok(()));
        assert_eq!(check(&"€".repeat(171)), Err(TooLong { len: 513 }));
        assert_eq!(check("a b\t?#%\u{1}"), Ok(()));
    }

    #[test]
    fn cloudflare_limits_are_inclusive() {
        assert!(!cloudflare::ttl_allowed(59));
        assert!(cloudflare::ttl_allowed(60));
        assert!(!cloudflare::ttl_allowed(-60));
        assert!(cloudflare::expiration_allowed(1_060, 1_000));
        assert!(!cloudflare::expiration_allowed(1_059, 1_000));
        assert!(!cloudflare::expiration_allowed(i64::MIN, 1_000));
        assert!(cloudflare::metadata_fits(&"m".repeat(1024)));
        assert!(!cloudflare::metadata_fits(&"m".repeat(1025)));
        assert!(cloudflare::value_fits(26_214_400));
        assert!(!cloudflare::value_fits(26_214_401));
        assert_eq!(
            (
                cloudflare::BULK_WRITE_MAX_PAIRS,
                cloudflare::BULK_WRITE_MAX_BODY_BYTES,
                cloudflare::BULK_DELETE_MAX_KEYS,
                cloudflare::BULK_GET_MAX_KEYS,
            ),
            (10_000, 100_000_000, 10_000, 100)
        );
    }
}
