//! Keys in URL paths, for both providers.
//!
//! A key travels as one percent-encoded path segment (progenitor's `encode_path`: `/`, `?`,
//! `#`, `%`, space, controls and non-ASCII are all encoded), so no key can reach another
//! endpoint. `.` and `..` are the exception: URL parsers drop them as dot segments whatever their
//! encoding, so they are refused before sending, as is the empty key.

use crate::error::InvalidInput;

/// Refuses keys that no URL path segment can carry.
pub(crate) fn check_addressable(key: &str) -> Result<(), InvalidInput> {
    if key.is_empty() || key == "." || key == ".." {
        return Err(InvalidInput::UnaddressableKey {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// Whether the key changes when percent-encoded as a path segment.
pub(crate) fn needs_encoding(key: &str) -> bool {
    progenitor_client::encode_path(key) != key
}

/// Refuses keys longer than `max` bytes.
pub(crate) fn check_length(key: &str, max: usize) -> Result<(), InvalidInput> {
    if key.len() > max {
        return Err(InvalidInput::KeyTooLong {
            len: key.len(),
            max,
        });
    }
    Ok(())
}
