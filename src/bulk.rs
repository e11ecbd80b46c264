//! What both providers' bulk calls share: the report that accounts for every submitted key, and
//! lazy chunking of entries into bounded request bodies.

use futures_util::{Stream, StreamExt as _};

use crate::error::InvalidInput;

/// A key a bulk call did not write (or delete).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedKey {
    /// The key.
    pub key: String,
    /// Its position in what the caller submitted, from 0.
    pub index: u64,
    /// Why it was not written.
    pub reason: String,
}

/// What a bulk write or delete did: every submitted key is either counted in `written` or
/// named in `failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkReport {
    /// Keys written (or deleted).
    pub written: u64,
    /// Keys not written, each with the reason.
    pub failed: Vec<FailedKey>,
}

impl BulkReport {
    /// The number of entries submitted.
    pub fn submitted(&self) -> u64 {
        self.written + self.failed.len() as u64
    }

    /// Reports every key of `keys` (with its caller's index) as not written, for `reason`.
    pub(crate) fn fail_all<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (&'k str, u64)>,
        reason: &str,
    ) {
        self.failed
            .extend(keys.into_iter().map(|(key, index)| FailedKey {
                key: key.to_string(),
                index,
                reason: reason.to_string(),
            }));
    }

    pub(crate) fn absorb(&mut self, other: BulkReport) {
        self.written += other.written;
        self.failed.extend(other.failed);
    }
}

/// The most bytes of a reason a report keeps from the service's text: one reason can be copied
/// to every line of a chunk, so its size is multiplied by up to 10,000.
pub(crate) const MAX_REASON_BYTES: usize = 512;

/// `reason` cut to [`MAX_REASON_BYTES`] at a character boundary, marked when cut.
pub(crate) fn clip(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

/// A chunk's wire body and, in the same order, each item's index in the caller's input.
pub(crate) struct Chunk<B> {
    pub(crate) body: B,
    pub(crate) indices: Vec<u64>,
    pub(crate) rejected: Vec<FailedKey>,
}

/// A key refused before sending, as reported.
pub(crate) fn refused(key: &str, index: u64, error: &InvalidInput) -> FailedKey {
    FailedKey {
        key: key.to_string(),
        index,
        reason: format!("refused before sending: {error}"),
    }
}

impl<T> Chunk<Vec<T>> {
    pub(crate) fn map_body<B>(self, wrap: fn(Vec<T>) -> B) -> Chunk<B> {
        Chunk {
            body: wrap(self.body),
            indices: self.indices,
            rejected: self.rejected,
        }
    }
}

/// Groups a stream into chunks of at most `max_items` items and `max_bytes` bytes (each item's
/// size as `prepare` reports it, plus 2 for the brackets), built only as they are pulled.
/// Entries `prepare` refuses travel with the chunk being built, to be reported.
pub(crate) fn chunked<'a, E, T>(
    entries: futures_util::stream::BoxStream<'a, E>,
    max_items: usize,
    max_bytes: usize,
    prepare: impl FnMut(u64, E) -> Result<(T, usize), FailedKey> + Send + 'a,
) -> impl Stream<Item = Chunk<Vec<T>>> + Send + 'a
where
    E: Send + 'a,
    T: Send + 'a,
{
    let state = (entries, 0u64, None::<(u64, T, usize)>, prepare);
    futures_util::stream::unfold(
        state,
        move |(mut entries, mut next_index, mut carried, mut prepare)| async move {
            let mut chunk = Chunk {
                body: Vec::new(),
                indices: Vec::new(),
                rejected: Vec::new(),
            };
            let mut bytes = 2usize;
            if let Some((index, item, size)) = carried.take() {
                chunk.body.push(item);
                chunk.indices.push(index);
                bytes += size;
            }
            loop {
                let Some(entry) = entries.next().await else {
                    let empty = chunk.body.is_empty() && chunk.rejected.is_empty();
                    return (!empty).then_some((chunk, (entries, next_index, None, prepare)));
                };
                let index = next_index;
                next_index += 1;
                match prepare(index, entry) {
                    Err(failed) => chunk.rejected.push(failed),
                    Ok((item, size)) => {
                        if chunk.body.len() == max_items
                            || (!chunk.body.is_empty() && bytes.saturating_add(size) > max_bytes)
                        {
                            return Some((
                                chunk,
                                (entries, next_index, Some((index, item, size)), prepare),
                            ));
                        }
                        bytes = bytes.saturating_add(size);
                        chunk.body.push(item);
                        chunk.indices.push(index);
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{MAX_REASON_BYTES, clip};

    #[test]
    fn a_short_reason_is_kept_and_a_long_one_cut_at_a_character() {
        assert_eq!(clip("bad line".into()), "bad line");
        let exact = "x".repeat(MAX_REASON_BYTES);
        assert_eq!(clip(exact.clone()), exact);
        // A 3-byte character straddling the limit is dropped whole.
        let straddling = format!("{}€€", "x".repeat(MAX_REASON_BYTES - 1));
        let clipped = clip(straddling);
        assert_eq!(clipped, format!("{}…", "x".repeat(MAX_REASON_BYTES - 1)));
    }
}
