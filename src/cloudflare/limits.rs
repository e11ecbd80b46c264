//! Cloudflare Workers KV limits, checked before any request (see `specs/README.md`).

use serde::Serialize;

use crate::error::InvalidInput;
use crate::keys;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value: 25 MiB.
pub const MAX_VALUE_BYTES: u64 = 25 * 1024 * 1024;
/// Largest metadata, serialized as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;
/// Shortest `expiration_ttl`, in seconds.
pub const MIN_EXPIRATION_TTL: u64 = 60;
/// Most pairs in one bulk write request.
pub const BULK_WRITE_MAX_PAIRS: usize = 10_000;
/// Largest bulk write request body by default: the service's 100 MB.
pub const BULK_WRITE_MAX_BYTES: usize = 100_000_000;
/// Most keys in one bulk delete request.
pub const BULK_DELETE_MAX_KEYS: usize = 10_000;
/// Most keys in one bulk get request.
pub const BULK_GET_MAX_KEYS: usize = 100;
/// Smallest and largest page of a key listing.
pub const KEYS_PAGE_LIMIT: std::ops::RangeInclusive<u32> = 10..=1000;
/// Smallest and largest page of a namespace listing.
pub const NAMESPACES_PAGE_LIMIT: std::ops::RangeInclusive<u32> = 5..=100;

/// Checks a key; `literal_keys` is true for a namespace that stores URL-encoded keys literally.
pub(crate) fn check_key(key: &str, literal_keys: bool) -> Result<(), InvalidInput> {
    keys::check_addressable(key)?;
    keys::check_length(key, MAX_KEY_BYTES)?;
    if literal_keys && let Some(position) = crate::transport::segment::first_to_encode(key) {
        return Err(InvalidInput::KeyNeedsUrlEncoding { position });
    }
    Ok(())
}

pub(crate) fn check_value_len(len: Option<u64>) -> Result<(), InvalidInput> {
    crate::body::check_len(len, MAX_VALUE_BYTES)
}

fn check_ttl(ttl: Option<u64>) -> Result<(), InvalidInput> {
    match ttl {
        Some(ttl) if ttl < MIN_EXPIRATION_TTL => Err(InvalidInput::ExpirationTtlTooShort {
            ttl,
            min: MIN_EXPIRATION_TTL,
        }),
        _ => Ok(()),
    }
}

/// Checks `expiration_ttl` and turns it into the `i64` the API takes.
pub(crate) fn ttl_seconds(ttl: Option<u64>) -> Result<Option<i64>, InvalidInput> {
    check_ttl(ttl)?;
    ttl.map(|ttl| {
        i64::try_from(ttl).map_err(|_| InvalidInput::OutOfRange {
            what: "expiration_ttl",
            allowed: "at most i64::MAX",
        })
    })
    .transpose()
}

/// Serializes metadata and checks its size.
pub(crate) fn metadata_json(metadata: &impl Serialize) -> Result<String, InvalidInput> {
    let json =
        serde_json::to_string(metadata).map_err(|e| InvalidInput::MetadataNotSerializable {
            reason: e.to_string(),
        })?;
    if json.len() > MAX_METADATA_BYTES {
        return Err(InvalidInput::MetadataTooLarge {
            len: json.len(),
            max: MAX_METADATA_BYTES,
        });
    }
    Ok(json)
}

/// What a write sends besides its key and value, once checked.
#[derive(Debug, PartialEq)]
pub(crate) struct CheckedWrite {
    /// The metadata serialized, as the multipart form sends it.
    pub(crate) metadata: Option<String>,
    /// `expiration_ttl` as the API takes it.
    pub(crate) expiration_ttl: Option<i64>,
}

/// The checks every write gets, single (plain or multipart) or bulk, in this order: the value's
/// length when known, the metadata, `expiration_ttl`. The key is the caller's to check: a single
/// write's travels in a URL, a bulk write's in JSON.
pub(crate) fn check_write(
    value_len: Option<u64>,
    metadata: Option<&serde_json::Value>,
    expiration_ttl: Option<u64>,
) -> Result<CheckedWrite, InvalidInput> {
    check_value_len(value_len)?;
    let metadata = metadata.map(metadata_json).transpose()?;
    let expiration_ttl = ttl_seconds(expiration_ttl)?;
    Ok(CheckedWrite {
        metadata,
        expiration_ttl,
    })
}

pub(crate) fn check_page_limit(
    what: &'static str,
    limit: Option<u32>,
    range: std::ops::RangeInclusive<u32>,
    allowed: &'static str,
) -> Result<(), InvalidInput> {
    match limit {
        Some(limit) if !range.contains(&limit) => Err(InvalidInput::OutOfRange { what, allowed }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{CheckedWrite, MAX_VALUE_BYTES, check_write};
    use crate::error::InvalidInput;
    use crate::policy::ReadLimits;

    #[test]
    fn a_write_checks_value_metadata_and_ttl_in_that_order() {
        assert_eq!(
            check_write(Some(5), Some(&json!({"a": 1})), Some(60)),
            Ok(CheckedWrite {
                metadata: Some(r#"{"a":1}"#.to_string()),
                expiration_ttl: Some(60),
            })
        );
        assert_eq!(
            check_write(None, None, None),
            Ok(CheckedWrite {
                metadata: None,
                expiration_ttl: None,
            })
        );
        let long_value = Some(MAX_VALUE_BYTES + 1);
        let big_metadata = json!("m".repeat(super::MAX_METADATA_BYTES));
        assert!(matches!(
            check_write(long_value, None, None),
            Err(InvalidInput::ValueTooLarge { .. })
        ));
        assert!(matches!(
            check_write(None, Some(&big_metadata), None),
            Err(InvalidInput::MetadataTooLarge { .. })
        ));
        assert!(matches!(
            check_write(None, None, Some(59)),
            Err(InvalidInput::ExpirationTtlTooShort { ttl: 59, min: 60 })
        ));
        assert!(matches!(
            check_write(None, None, Some(u64::MAX)),
            Err(InvalidInput::OutOfRange { .. })
        ));
        // With several faults, the first in that order is the one reported.
        assert!(matches!(
            check_write(long_value, Some(&big_metadata), Some(1)),
            Err(InvalidInput::ValueTooLarge { .. })
        ));
        assert!(matches!(
            check_write(None, Some(&big_metadata), Some(1)),
            Err(InvalidInput::MetadataTooLarge { .. })
        ));
    }

    #[test]
    fn bytes_collects_at_most_the_value_maximum_by_default() {
        let limit =
            |limits: &ReadLimits| crate::body::value_bytes_limit(limits, super::MAX_VALUE_BYTES);
        assert_eq!(limit(&ReadLimits::default()), 25 * 1024 * 1024);
        let configured = ReadLimits {
            value_bytes: Some(1024),
            ..ReadLimits::default()
        };
        assert_eq!(limit(&configured), 1024);
    }
}
