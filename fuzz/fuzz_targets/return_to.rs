//! `return_to` validator: never panics, and whatever it accepts is a same-origin relative path
//! at every level of percent-decoding: a single leading `/` (not `//` or `/\`), no backslash, no
//! control character (tab, CR, LF included), no scheme, resolving on this origin. The value
//! returned is a valid header value, accepted again unchanged, and decodes to what was asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode;
use rampart_server::pages::return_to::{safe_return_to, MAX_LEN};
use url::Url;

/// Levels of decoding after which an accepted target must be stable (the validator's limit).
const MAX_LEVELS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let b = raw.as_bytes();
    let plainly_unsafe = b.first() != Some(&b'/')
        || matches!(b.get(1), Some(b'/' | b'\\'))
        || b.iter().any(|&c| c == b'\\' || c < 0x20 || c == 0x7f)
        || raw.len() > MAX_LEN;
    let accepted = safe_return_to(raw);
    if plainly_unsafe {
        assert_eq!(accepted, None, "{raw:?}");
    }
    let Some(out) = accepted else { return };
    // Printable ASCII only, so always a valid `Location` value.
    assert!(out.bytes().all(|c| (0x21..0x7f).contains(&c)), "{out:?}");
    assert!(http::HeaderValue::from_str(&out).is_ok());
    // Checked again when the login form is submitted: still accepted, unchanged.
    assert_eq!(safe_return_to(&out).as_deref(), Some(out.as_str()), "{raw:?}");
    // Encoding changes only the representation, not the target.
    let decoded_out: Vec<u8> = percent_decode(out.as_bytes()).collect();
    let decoded_raw: Vec<u8> = percent_decode(raw.as_bytes()).collect();
    assert_eq!(decoded_out, decoded_raw, "{raw:?} -> {out:?}");

    for text in [raw.as_bytes(), out.as_bytes()] {
        let mut level = text.to_vec();
        let mut stable = false;
        for _ in 0..=MAX_LEVELS {
            assert_same_origin_path(&level, raw);
            let next: Vec<u8> = percent_decode(&level).collect();
            if next == level {
                stable = true;
                break;
            }
            level = next;
        }
        assert!(stable, "accepted {raw:?} is still changing after {MAX_LEVELS} decodings");
    }
});

fn assert_same_origin_path(b: &[u8], raw: &str) {
    assert_eq!(b.first(), Some(&b'/'), "{raw:?}");
    assert!(!matches!(b.get(1), Some(b'/' | b'\\')), "{raw:?}");
    assert!(!b.contains(&b'\\'), "{raw:?}");
    assert!(!b.iter().any(|&c| c < 0x20 || c == 0x7f), "{raw:?}");
    let text = String::from_utf8_lossy(b);
    assert!(!text.chars().any(char::is_control), "{raw:?}");
    // As a browser resolves it (WHATWG URL parsing): same scheme, host and port, and a path
    // that is not itself a network-path reference.
    let base = Url::parse("https://rampart.example/login?x=1").unwrap();
    if let Ok(url) = base.join(&text) {
        assert_eq!(url.origin(), base.origin(), "{raw:?} -> {url}");
        assert!(url.username().is_empty() && url.password().is_none(), "{raw:?}");
        assert!(!url.path().starts_with("//"), "{raw:?} -> {url}");
    }
}
