//! Fastly KV Store limits, checked before any request (see `specs/README.md` for the source of
//! the key rules: the Fastly Compute SDK documentation of `KVStore`).

use std::num::NonZeroU32;

use crate::error::InvalidInput;
use crate::keys;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest value: 25 MB (decimal).
pub const MAX_VALUE_BYTES: u64 = 25_000_000;
/// Largest metadata, in bytes.
pub const MAX_METADATA_BYTES: usize = 2000;
/// Keys may not start with this.
pub const RESERVED_KEY_PREFIX: &str = ".well-known/acme-challenge/";
/// Largest batch request body by default. Fastly documents no bound; this keeps each request
/// (held in memory so it can be sent again) small.
pub const BATCH_DEFAULT_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Most lines in one batch request.
pub const BATCH_MAX_LINES: usize = 10_000;

/// Checks a key against every rule of the service.
pub(crate) fn check_key(key: &str) -> Result<(), InvalidInput> {
    keys::check_addressable(key)?;
    keys::check_length(key, MAX_KEY_BYTES)?;
    if key.starts_with(RESERVED_KEY_PREFIX) {
        let rule = "keys may not start with `.well-known/acme-challenge/`";
        return Err(InvalidInput::KeyNotAllowed { rule, position: 0 });
    }
    if let Some((position, _)) = key.char_indices().find(|(_, c)| c.is_control()) {
        let rule = "keys may not contain CR, LF or other control characters";
        return Err(InvalidInput::KeyNotAllowed { rule, position });
    }
    Ok(())
}

pub(crate) fn check_value_len(len: Option<u64>) -> Result<(), InvalidInput> {
    crate::body::check_len(len, MAX_VALUE_BYTES)
}

/// The checks every write gets, single or batch: the key, the value's length when known, and
/// the metadata.
pub(crate) fn check_write(
    key: &str,
    value_len: Option<u64>,
    metadata: Option<&str>,
) -> Result<(), InvalidInput> {
    check_key(key)?;
    check_value_len(value_len)?;
    if let Some(metadata) = metadata {
        check_metadata(metadata)?;
    }
    Ok(())
}

/// A listing's page size, when given: at least 1.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<Option<NonZeroU32>, InvalidInput> {
    limit
        .map(|limit| {
            NonZeroU32::new(limit).ok_or(InvalidInput::OutOfRange {
                what: "limit",
                allowed: "at least 1",
            })
        })
        .transpose()
}

/// Metadata travels in a header: at most 2000 bytes, and a valid header value.
pub(crate) fn check_metadata(metadata: &str) -> Result<(), InvalidInput> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(InvalidInput::MetadataTooLarge {
            len: metadata.len(),
            max: MAX_METADATA_BYTES,
        });
    }
    if reqwest::header::HeaderValue::from_str(metadata).is_err()
        || metadata.chars().any(char::is_control)
    {
        return Err(InvalidInput::MetadataNotHeaderValue);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::error::InvalidInput;
    use crate::policy::ReadLimits;

    #[test]
    fn a_write_checks_key_value_and_metadata_in_that_order() {
        assert_eq!(super::check_write("k", Some(1), Some("m")), Ok(()));
        assert_eq!(super::check_write("k", None, None), Ok(()));
        let long_value = Some(super::MAX_VALUE_BYTES + 1);
        let long_metadata = "m".repeat(super::MAX_METADATA_BYTES + 1);
        // Each fault alone, then the first of several is the one reported.
        assert!(matches!(
            super::check_write("", None, None),
            Err(InvalidInput::UnaddressableKey { len: 0 })
        ));
        assert!(matches!(
            super::check_write("k", long_value, None),
            Err(InvalidInput::ValueTooLarge { .. })
        ));
        assert!(matches!(
            super::check_write("k", None, Some(&long_metadata)),
            Err(InvalidInput::MetadataTooLarge { .. })
        ));
        assert!(matches!(
            super::check_write("k", None, Some("a\nb")),
            Err(InvalidInput::MetadataNotHeaderValue)
        ));
        assert!(matches!(
            super::check_write("..", long_value, Some(&long_metadata)),
            Err(InvalidInput::UnaddressableKey { len: 2 })
        ));
        assert!(matches!(
            super::check_write("k", long_value, Some(&long_metadata)),
            Err(InvalidInput::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn a_page_limit_is_at_least_one() {
        assert_eq!(super::page_limit(None), Ok(None));
        assert_eq!(super::page_limit(Some(1)).unwrap().unwrap().get(), 1);
        assert_eq!(
            super::page_limit(Some(0)),
            Err(InvalidInput::OutOfRange {
                what: "limit",
                allowed: "at least 1",
            })
        );
    }

    #[test]
    fn bytes_collects_at_most_the_value_maximum_by_default() {
        let limit =
            |limits: &ReadLimits| crate::body::value_bytes_limit(limits, super::MAX_VALUE_BYTES);
        assert_eq!(limit(&ReadLimits::default()), 25_000_000);
        let configured = ReadLimits {
            value_bytes: Some(1024),
            ..ReadLimits::default()
        };
        assert_eq!(limit(&configured), 1024);
    }
}
