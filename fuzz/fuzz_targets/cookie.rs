//! Session cookie codec: reading arbitrary `Cookie` headers never panics, and only a canonical
//! 43-character id is ever accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_session::{CookieConfig, CookieRead, SessionId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(id) = SessionId::parse(text) {
            assert_eq!(id.to_cookie_value().expose_secret(), text);
        }
    }
    let Ok(value) = http::HeaderValue::from_bytes(data) else { return };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, value);
    for cfg in [CookieConfig::for_origin_https(true), CookieConfig::for_origin_https(false)] {
        if let CookieRead::Valid(id) = cfg.read(&headers) {
            assert_eq!(id.to_cookie_value().len(), 43);
        }
    }
});
