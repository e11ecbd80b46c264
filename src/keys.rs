//! Keys in URL paths, for both providers.
//!
//! A key travels as one percent-encoded path segment ([`crate::transport::segment::encode`]:
//! every byte outside RFC 3986 `pchar`, `\` included, is encoded), so no key can reach another
//! endpoint; the transport checks the final URL's path before sending all the same. `.` and `..`
//! are the exception: URL parsers drop them as dot segments whatever their encoding, so they
//! are refused before sending, as is the empty key. Errors say lengths and byte positions, never
//! the key: keys come from end users and errors end up in logs.

use crate::error::InvalidInput;
use crate::transport::segment;

/// Refuses keys that no URL path segment can carry.
pub(crate) fn check_addressable(key: &str) -> Result<(), InvalidInput> {
    if segment::is_unaddressable(key) {
        return Err(InvalidInput::UnaddressableKey { len: key.len() });
    }
    Ok(())
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

/// Refuses an id (store, namespace, account) that no URL path segment can carry. Calls that
/// send a request refuse it anyway, before sending; bulk calls check first so that a bad id is
/// an error, not a report with every key failed.
pub(crate) fn check_id(id: &str) -> Result<(), InvalidInput> {
    if segment::is_unaddressable(id) {
        return Err(InvalidInput::UnaddressableId);
    }
    Ok(())
}
