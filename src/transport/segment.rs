//! URL path segments: the one encoder for keys and ids, and the check, before a request leaves,
//! that its parsed path is its operation's template with one segment per parameter.
//!
//! The URL parser reads `\` as `/`, resolves `..` and `%2e` dot segments and drops tab, CR and
//! LF (`shared/URL-SAFETY.md`), so a segment stays one segment, decoding back to exactly the
//! key, only when every byte outside RFC 3986 `pchar` is percent-encoded. Unreserved
//! characters, sub-delims, `:` and `@` stay literal: a Cloudflare namespace that stores keys
//! literally (`supports_url_encoding: false`) keeps accepting the keys it accepted before.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Every ASCII byte outside `pchar`; non-ASCII is always encoded by `utf8_percent_encode`.
const NOT_PCHAR: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Encodes `segment` as one URL path segment. The generated clients call this instead of
/// `progenitor_client::encode_path` (`codegen.rs` rewrites them), as does every hand-written
/// request. Most keys and every id need no encoding: those are borrowed, not copied.
pub(crate) fn encode(segment: &str) -> Cow<'_, str> {
    if needs_encoding(segment) {
        Cow::Owned(utf8_percent_encode(segment, NOT_PCHAR).to_string())
    } else {
        Cow::Borrowed(segment)
    }
}

/// Whether [`encode`] changes `segment`.
pub(crate) fn needs_encoding(segment: &str) -> bool {
    first_to_encode(segment).is_some()
}

/// The byte position of the first byte [`encode`] changes (always a character's first byte:
/// a non-ASCII character is encoded whole).
pub(crate) fn first_to_encode(segment: &str) -> Option<usize> {
    segment.bytes().position(|b| !is_pchar(b))
}

/// Whether `byte` is an ASCII byte of RFC 3986 `pchar` other than `%`: unreserved, a
/// sub-delim, `:` or `@`. Kept in step with [`NOT_PCHAR`] by a test.
fn is_pchar(byte: u8) -> bool {
    // A table: every byte of every request's path is looked up here, some twice.
    PCHAR[usize::from(byte)]
}

const PCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric();
        byte += 1;
    }
    let others = b"-._~!$&'()*+,;=:@";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether no URL can carry `segment` as one path segment: the parser drops or resolves these
/// whatever their encoding.
pub(crate) fn is_unaddressable(segment: &str) -> bool {
    segment.is_empty() || segment == "." || segment == ".."
}

/// The message of a request refused by [`check_path`].
pub(crate) const REFUSED: &str =
    "a path parameter is empty, `.` or `..`, or would not stay one URL path segment";

/// Checks that `path`, as parsed from the request URL, is `base_url`'s path followed by
/// `template` with each `{parameter}` one non-empty segment that is not a dot segment. Checks the
/// result, not the encoder: whatever built the URL, a request whose path left its template does
/// not leave.
pub(crate) fn check_path(path: &str, base_url: &str, template: &str) -> Result<(), &'static str> {
    let (base, trailing_slash) = base_path(base_url);
    let mut sent = path.as_bytes().strip_prefix(base).ok_or(REFUSED)?;
    if trailing_slash && sent.starts_with(b"//") {
        // `https://host/v4/` + `/accounts…`: the URL keeps both slashes.
        sent = &sent[1..];
    }
    // Every request passes here: literal parts compared whole, each parameter read once.
    let mut template = template.as_bytes();
    loop {
        let open = template.iter().position(|b| *b == b'{');
        let literal = &template[..open.unwrap_or(template.len())];
        sent = sent.strip_prefix(literal).ok_or(REFUSED)?;
        let Some(open) = open else {
            return if sent.is_empty() {
                Ok(())
            } else {
                Err(REFUSED)
            };
        };
        template = &template[open..];
        let close = template.iter().position(|b| *b == b'}').ok_or(REFUSED)?;
        template = &template[close + 1..];
        let end = encoded_len(sent).ok_or(REFUSED)?;
        let segment = &sent[..end];
        if segment.is_empty() || is_dot_segment(segment) {
            return Err(REFUSED);
        }
        sent = &sent[end..];
    }
}

/// Whether `segment` is exactly what [`encode`] writes for some text: `pchar` bytes as they are,
/// everything else as `%XX` in upper case, and no `%XX` for a byte that stays literal. A segment
/// any other encoder wrote (a raw `%`, a `%2f` left for the server to decode) is refused.
#[cfg(test)]
fn is_encoded(segment: &[u8]) -> bool {
    encoded_len(segment) == Some(segment.len())
}

/// The length of the segment `path` starts with (up to its first `/`), if that segment is
/// exactly what [`encode`] writes (see [`is_encoded`]). One pass, indexed: it runs on every
/// parameter of every request.
fn encoded_len(path: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < path.len() {
        let byte = path[at];
        if is_pchar(byte) {
            at += 1;
        } else if byte == b'/' {
            return Some(at);
        } else if byte == b'%' {
            let high = upper_hex(*path.get(at + 1)?)?;
            let low = upper_hex(*path.get(at + 2)?)?;
            if is_pchar(high << 4 | low) {
                return None;
            }
            at += 3;
        } else {
            return None;
        }
    }
    Some(at)
}

fn upper_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The path of a base URL without its trailing `/` (empty for `https://host`), and whether it
/// had one.
fn base_path(base_url: &str) -> (&[u8], bool) {
    let url = base_url.as_bytes();
    let after_scheme = url
        .windows(3)
        .position(|w| w == b"://")
        .map_or(url, |i| &url[i + 3..]);
    let path = match after_scheme.iter().position(|b| *b == b'/') {
        Some(i) => &after_scheme[i..],
        None => &[],
    };
    let path = &path[..path
        .iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .unwrap_or(path.len())];
    match path.split_last() {
        Some((b'/', rest)) => (rest, true),
        _ => (path, false),
    }
}

/// `.` or `..` spelled with `%2e` in any case, which the parser counts as dots.
fn is_dot_segment(segment: &[u8]) -> bool {
    // Each dot is `.` or `%2e`; at most two of them.
    let mut rest = segment;
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a server receiving `base/<encoded>` sees as the segment, through the real parser.
    fn sent_segment(key: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("https://h/base/{}/end", encode(key))).ok()?;
        let segments: Vec<&str> = url.path_segments()?.collect();
        match segments.as_slice() {
            ["base", segment, "end"] => Some(segment.to_string()),
            _ => None,
        }
    }

    fn decoded(segment: &str) -> Vec<u8> {
        percent_encoding::percent_decode_str(segment).collect()
    }

    #[test]
    fn every_addressable_key_stays_one_segment_and_decodes_back() {
        let keys = [
            r"..\..\tokens\self",
            r"x\y",
            "a/b",
            "a%2Fb",
            "%2e",
            "%2e%2e",
            "a\tb\rc\nd",
            "a b",
            "é",
            "日本",
            "a^b|c[d]e{f}g`h\"i<j>k",
            "a?b#c",
            "a:b@c!$&'()*+,;=d",
            "\u{0}\u{7f}",
            "..a",
            ".a.",
            "...",
            "~-._",
        ];
        for key in keys {
            let segment = sent_segment(key).unwrap_or_else(|| panic!("{key:?} left its segment"));
            assert_eq!(decoded(&segment), key.as_bytes(), "{key:?}");
        }
    }

    #[test]
    fn the_byte_rule_and_the_encoder_agree_on_every_byte() {
        for byte in 0..=u8::MAX {
            let text = if byte.is_ascii() {
                (byte as char).to_string()
            } else {
                "é".to_string()
            };
            assert_eq!(needs_encoding(&text), encode(&text) != text, "byte {byte}");
        }
    }

    #[test]
    fn what_the_encoder_writes_passes_the_check_and_nothing_else_does() {
        for key in [
            "a b",
            "é/ü",
            r"x\y",
            "%2e",
            "a:b@c!$&'()*+,;=d",
            "~-._",
            "\u{7f}\t",
        ] {
            assert!(is_encoded(encode(key).as_bytes()), "{key:?}");
        }
        for segment in ["a%2fb", "%41", "%", "%2", "%zz", "a b", "a^b", "é"] {
            assert!(!is_encoded(segment.as_bytes()), "{segment:?}");
        }
    }

    #[test]
    fn sub_delims_colon_and_at_stay_literal() {
        let key = "a:b@c!$&'()*+,;=d-._~";
        assert_eq!(encode(key), key);
        assert!(!needs_encoding(key));
        for key in [r"a\b", "a^b", "a|b", "a[b]", "é", "a%b", "a b"] {
            assert!(needs_encoding(key), "{key:?}");
            assert_eq!(needs_encoding(key), encode(key) != key);
        }
    }

    #[test]
    fn paths_that_leave_their_template_are_refused() {
        let template = "/stores/{store_id}/keys/{key}";
        let ok = "/v4/stores/s1/keys/a%5Cb";
        assert_eq!(check_path(ok, "https://h/v4", template), Ok(()));
        let with_slash = "/v4//stores/s1/keys/a%5Cb";
        assert_eq!(check_path(with_slash, "https://h/v4/", template), Ok(()));
        assert_eq!(
            check_path("//stores/s/keys/k", "https://h/", template),
            Ok(())
        );
        for path in [
            "/v4/stores/s1/keys/",
            "/v4/stores/s1/keys",
            "/v4/stores//keys/k",
            "/v4/stores/s1/keys/a/b",
            "/v4/tokens/self",
            "/stores/s1/keys/k",
            "/v4/stores/%2E%2e/keys/k",
            "/v4/stores/.%2E/keys/k",
            "/v4/stores/s1/keys/%2e",
            "/v4/stores/s1/keys/a%2fb",
            "/v4/stores/s1/keys/a%41",
            "/v4/stores/s1/keys/a%",
            "/v4/stores/s1/keys/a%zz",
            "/v4/stores/s1/keys/a^b",
        ] {
            assert_eq!(
                check_path(path, "https://h/v4", template),
                Err(REFUSED),
                "{path}"
            );
        }
        assert_eq!(
            check_path("/stores/s/keys/k", "http://127.0.0.1:9", template),
            Ok(())
        );
    }
}
