//! Reading one field out of an `application/x-www-form-urlencoded` body.

use http::header::HeaderMap;

use crate::util::has_media_type;

/// Whether the request body is `application/x-www-form-urlencoded`.
pub(crate) fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    has_media_type(headers, "application/x-www-form-urlencoded")
}

/// The decoded value of the first field called `name`; `None` when absent or not UTF-8.
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let key = decode(parts.next()?)?;
        if key != name {
            return None;
        }
        decode(parts.next().unwrap_or_default())
    })
}

/// Percent-decoding with `+` as space. `None` on a broken escape or non-UTF-8 result.
fn decode(input: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*input.get(i + 1)?)?;
                let lo = hex(*input.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_TYPE;

    #[test]
    fn finds_the_first_matching_field_and_decodes_it() {
        let body = b"a=1&csrf%5Ftoken=ab%2Dc+d&csrf_token=second";
        assert_eq!(form_field(body, "csrf_token").as_deref(), Some("ab-c d"));
        assert_eq!(form_field(b"x=1", "csrf_token"), None);
        assert_eq!(form_field(b"csrf_token", "csrf_token").as_deref(), Some(""));
    }

    #[test]
    fn broken_escapes_are_ignored() {
        assert_eq!(form_field(b"csrf_token=%zz", "csrf_token"), None);
        assert_eq!(form_field(b"csrf_token=%4", "csrf_token"), None);
        assert_eq!(form_field(b"csrf_token=%ff", "csrf_token"), None);
    }

    #[test]
    fn recognises_the_form_media_type_with_parameters() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "Application/X-WWW-Form-Urlencoded; charset=UTF-8".parse().unwrap());
        assert!(is_urlencoded_form(&h));
        h.insert(CONTENT_TYPE, "multipart/form-data; boundary=x".parse().unwrap());
        assert!(!is_urlencoded_form(&h));
    }
}
