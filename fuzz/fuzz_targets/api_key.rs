//! API-key parser: never panics; every accepted text is exactly `rk_<16 lowercase hex>_<43
//! base64url>` with a canonical secret, so re-assembling its parts gives the input back and
//! one key has one text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::token::{b64url, b64url_decode};
use rampart_server::api_keys::{bearer_key, display_prefix, parse, ID_LEN, KEY_PREFIX, SECRET_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_parse(text);
    }

    // A key assembled from arbitrary bytes parses back to its id.
    if let Some((id_bytes, rest)) = data.split_first_chunk::<{ ID_LEN / 2 }>() {
        if let Some(secret_bytes) = rest.first_chunk::<32>() {
            let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
            let key = format!("{}_{}", display_prefix(&id), b64url(secret_bytes));
            assert_eq!(parse(&key), Some(id.as_str()));
            // Upper-case hex names a different text form: refused when it changes anything.
            let upper =
                format!("{KEY_PREFIX}{}{}", id.to_uppercase(), &key[KEY_PREFIX.len() + ID_LEN..]);
            if upper != key {
                assert_eq!(parse(&upper), None);
            }
        }
    }

    // `Authorization` header: only a `Bearer rk_…` token is taken, trimmed, from the value.
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.clone());
        if let Some(token) = bearer_key(&headers) {
            assert!(token.starts_with(KEY_PREFIX));
            assert_eq!(token, token.trim());
            let value = value.to_str().expect("a returned token comes from a text value");
            assert!(value.contains(token));
            let scheme = value.trim().split(' ').next().unwrap_or("");
            assert!(scheme.eq_ignore_ascii_case("bearer"));
            check_parse(token);
        }
    }
});

fn check_parse(text: &str) {
    let Some(id) = parse(text) else { return };
    assert_eq!(text.len(), KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN);
    assert!(text.is_ascii());
    assert_eq!(id.len(), ID_LEN);
    assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id:?}");
    let secret = &text[KEY_PREFIX.len() + ID_LEN + 1..];
    assert_eq!(format!("{}_{secret}", display_prefix(id)), text);
    // The secret is 256 bits in canonical base64url: re-encoding gives the same text.
    let bytes = b64url_decode(secret).expect("an accepted secret decodes");
    assert_eq!(bytes.len(), 32);
    assert_eq!(b64url(&bytes), secret);
}
