//! Session cookie codec: reading arbitrary `Cookie` headers never panics, only a canonical
//! 43-character id is ever accepted, what is written reads back, and a second, different
//! session cookie (cookie tossing) makes the read malformed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::token::b64url;
use rampart_session::{CookieConfig, CookieRead, SessionId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(id) = SessionId::parse(text) {
            assert_eq!(id.to_cookie_value().expose_secret(), text);
        }
    }
    let configs = [CookieConfig::for_origin_https(true), CookieConfig::for_origin_https(false)];

    // Any 32 bytes make an id whose `Set-Cookie` reads back as the same id.
    if let Some(bytes) = data.first_chunk::<32>() {
        let id = SessionId::parse(&b64url(bytes)).expect("32 bytes in base64url are an id");
        for cfg in configs {
            let set = cfg.set_cookie(&id);
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            let headers = cookie_headers(&[pair.as_bytes()]);
            assert_eq!(cfg.read(&headers), CookieRead::Valid(id.clone()));
        }
    }

    let Ok(value) = http::HeaderValue::from_bytes(data) else { return };
    let headers = cookie_headers(&[data]);
    for cfg in configs {
        let read = cfg.read(&headers);
        let CookieRead::Valid(id) = read else {
            // Adding our own cookie never repairs a malformed read.
            if read == CookieRead::Malformed {
                let other = format!("{}={}", cfg.name(), b64url(&[7u8; 32]));
                let h = cookie_headers(&[data, other.as_bytes()]);
                assert_eq!(cfg.read(&h), CookieRead::Malformed);
            }
            continue;
        };
        let text = id.to_cookie_value();
        assert_eq!(text.len(), 43);
        assert!(value.as_bytes().windows(43).any(|w| w == text.expose_secret().as_bytes()));
        // The same cookie again in another header: still the same id.
        let same = format!("{}={}", cfg.name(), text.expose_secret());
        assert_eq!(
            cfg.read(&cookie_headers(&[data, same.as_bytes()])),
            CookieRead::Valid(id.clone())
        );
        // A different id under the same name: refused as a whole.
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&rampart_core::token::b64url_decode(text.expose_secret()).unwrap());
        bytes[0] ^= 1;
        let other = format!("{}={}", cfg.name(), b64url(&bytes));
        assert_eq!(cfg.read(&cookie_headers(&[data, other.as_bytes()])), CookieRead::Malformed);
        assert_eq!(cfg.read(&cookie_headers(&[other.as_bytes(), data])), CookieRead::Malformed);
    }
});

fn cookie_headers(values: &[&[u8]]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for v in values {
        headers.append(http::header::COOKIE, http::HeaderValue::from_bytes(v).unwrap());
    }
    headers
}
