//! What of an entry can cross to the other store: metadata in the destination's kind, expiry
//! within its minimum time to live. What cannot is reported with its key, never altered.

use crate::kv::{Capabilities, Expiry, Metadata, MetadataKind, Record};

/// Why an entry is not written to the destination: a failure (the destination cannot hold it)
/// or a skip (nothing to write any more).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotCarried {
    /// The destination cannot hold it as it is.
    Refused(String),
    /// It expires before the destination's minimum time to live: writing it would fail, and
    /// it will be gone from the source by then.
    Expiring,
}

/// `metadata` in the kind `to` keeps: Cloudflare's JSON as its text for Fastly; Fastly's text
/// for Cloudflare only if it is JSON (anything else would have to be altered).
pub(crate) fn metadata_for(metadata: Metadata, to: MetadataKind) -> Result<Metadata, String> {
    match (metadata, to) {
        (Metadata::Json(json), MetadataKind::Text) => Ok(Metadata::Text(json.to_string())),
        // Only JSON that reads back as the same text: parsing reorders object keys, drops
        // whitespace and duplicates and rounds large numbers, which would alter it.
        (Metadata::Text(text), MetadataKind::Json) => {
            match serde_json::from_str::<serde_json::Value>(&text) {
                // Compared as text (`Value == String` would compare a JSON string instead).
                Ok(json) if serde_json::to_string(&json).ok().as_deref() == Some(text.as_str()) => {
                    Ok(Metadata::Json(json))
                }
                _ => Err(
                    "its metadata is text that is not JSON in its compact form, and the \
                          destination keeps JSON (converting it would alter it)"
                        .to_string(),
                ),
            }
        }
        (same, _) => Ok(same),
    }
}

/// The write of `record` under `key` the destination can make at `now`: its metadata in the
/// destination's kind, its expiry as an absolute time; or why there is none.
pub(crate) fn item_for(
    key: &str,
    record: Record,
    to: &Capabilities,
    now: i64,
) -> Result<crate::kv::BulkItem, NotCarried> {
    let metadata = match record.metadata {
        None => None,
        Some(metadata) => Some(metadata_for(metadata, to.metadata).map_err(NotCarried::Refused)?),
    };
    let expiry = match record.expires_at {
        None => Expiry::Never,
        Some(at) => {
            let left = at.saturating_sub(now);
            let min = i64::try_from(to.min_ttl.as_secs()).unwrap_or(i64::MAX);
            if left < min {
                return Err(NotCarried::Expiring);
            }
            Expiry::At(at)
        }
    };
    let mut item = crate::kv::BulkItem::new(key, record.value).expiry(expiry);
    item.metadata = metadata;
    let write = crate::kv::Write {
        metadata: item.metadata.clone(),
        expiry,
        condition: crate::kv::Condition::Always,
    };
    let len = u64::try_from(item.value.len()).unwrap_or(u64::MAX);
    to.check_write(key, Some(len), &write, now)
        .map_err(|refused| NotCarried::Refused(format!("the destination refuses it: {refused}")))?;
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn record(metadata: Option<Metadata>, expires_at: Option<i64>) -> Record {
        Record {
            value: Bytes::from_static(b"v"),
            metadata,
            expires_at,
        }
    }

    #[test]
    fn metadata_crosses_as_json_text_and_back_and_other_text_is_refused() {
        let json = Metadata::Json(json!({"a": [1, "x"]}));
        let text = metadata_for(json.clone(), MetadataKind::Text).unwrap();
        assert_eq!(text, Metadata::Text(r#"{"a":[1,"x"]}"#.into()));
        assert_eq!(metadata_for(text, MetadataKind::Json).unwrap(), json);
        assert!(metadata_for(Metadata::Text("owner=ada".into()), MetadataKind::Json).is_err());
        // JSON that would not read back as the same text stays refused.
        for altered in [
            r#"{"b":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#"{"a":1,"a":2}"#,
            "123456789012345678901234567890",
        ] {
            let refused = metadata_for(Metadata::Text(altered.into()), MetadataKind::Json);
            assert!(refused.is_err(), "{altered}");
        }
    }

    #[test]
    fn an_entry_the_destination_cannot_hold_is_refused_or_skipped() {
        let now = 1_000_000;
        let cloudflare = Capabilities::cloudflare();
        // Expires in 30 s: under Cloudflare's 60 s minimum.
        let soon = record(None, Some(now + 30));
        assert_eq!(
            item_for("k", soon, &cloudflare, now),
            Err(NotCarried::Expiring)
        );
        let later = record(None, Some(now + 3600));
        assert_eq!(
            item_for("k", later, &cloudflare, now).unwrap().expiry,
            Expiry::At(now + 3600)
        );
        // A 600-byte key fits Fastly, not Cloudflare.
        let long = "k".repeat(600);
        let refused = item_for(&long, record(None, None), &cloudflare, now).unwrap_err();
        assert!(
            matches!(refused, NotCarried::Refused(ref why) if why.contains("512")),
            "{refused:?}"
        );
        assert!(item_for(&long, record(None, None), &Capabilities::fastly(), now).is_ok());
    }
}
