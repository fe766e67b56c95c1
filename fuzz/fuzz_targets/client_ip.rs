//! `X-Forwarded-For` / `Forwarded` parsing: never panics, and an untrusted peer is always the
//! client whatever the headers say.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_core::{ClientIp, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (xff, fwd) = text.split_once('\n').unwrap_or((text, text));
    let trusted = TrustedProxies::parse_list("10.0.0.0/8, ::1").unwrap_or_default();
    let got = trusted.resolve("10.0.0.1".parse().unwrap(), &[xff], &[fwd]);
    let _ = got;
    let peer = "203.0.113.7".parse().unwrap();
    assert_eq!(trusted.resolve(peer, &[xff], &[fwd]), ClientIp(peer));
    let _ = TrustedProxies::parse_list(text);
});
