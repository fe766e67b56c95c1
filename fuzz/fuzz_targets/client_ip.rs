//! `X-Forwarded-For` / `Forwarded` parsing: never panics; an untrusted peer is always the
//! client whatever the headers say; behind a trusted proxy the client is the peer or an address
//! written in the headers (never one made up from garbage), the hop a trusted proxy appends
//! last always wins over anything to its left, and addresses come out canonical (IPv4-mapped
//! IPv6 as IPv4).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use rampart_core::{ClientIp, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (xff, fwd) = text.split_once('\n').unwrap_or((text, text));
    let trusted = TrustedProxies::parse_list("10.0.0.0/8, ::1").unwrap();
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let mapped_proxy: IpAddr = "::ffff:10.0.0.1".parse().unwrap();

    let got = trusted.resolve(proxy, &[xff], &[fwd]);
    assert_canonical(got);
    let mut written = addresses_in(xff);
    written.extend(addresses_in(fwd));
    assert!(got.0 == proxy || written.contains(&got.0), "{got} is not in {text:?}");
    // An IPv4-mapped peer is the same peer.
    assert_eq!(trusted.resolve(mapped_proxy, &[xff], &[fwd]), got);

    // The hop a trusted proxy appends decides, whatever the client wrote before it.
    let appended: IpAddr = "198.51.100.9".parse().unwrap();
    let last = appended.to_string();
    assert_eq!(trusted.resolve(proxy, &[xff, &last], &[fwd]), ClientIp(appended));
    let last_fwd = format!("for={last}");
    assert_eq!(trusted.resolve(proxy, &[], &[fwd, &last_fwd]), ClientIp(appended));

    // Untrusted peers and no trusted proxies: the headers are ignored.
    for peer in ["203.0.113.7", "2001:db8::7"] {
        let peer: IpAddr = peer.parse().unwrap();
        assert_eq!(trusted.resolve(peer, &[xff], &[fwd]), ClientIp(peer));
    }
    assert_eq!(TrustedProxies::none().resolve(proxy, &[xff], &[fwd]), ClientIp(proxy));

    if let Ok(list) = TrustedProxies::parse_list(text) {
        // A listed network trusts its own addresses. (IPv4-mapped IPv6 networks are left out:
        // peers are compared in IPv4 form, so such an entry matches nothing.)
        for net in list.nets() {
            let ip = net.network();
            if !matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
                assert!(list.contains(ip), "{net} in {text:?}");
            }
        }
    }
});

fn assert_canonical(ip: ClientIp) {
    if let IpAddr::V6(v6) = ip.0 {
        assert!(v6.to_ipv4_mapped().is_none(), "{ip} is IPv4-mapped");
    }
}

/// Every address that can be read out of a header value, canonical: tokens between
/// separators, with or without brackets and a port.
fn addresses_in(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let tokens = text.split(|c: char| matches!(c, ',' | ';' | '=' | '"') || c.is_whitespace());
    for token in tokens.filter(|t| !t.is_empty()) {
        let mut candidates = vec![token];
        if let Some(rest) = token.strip_prefix('[') {
            candidates.extend(rest.split_once(']').map(|(a, _)| a));
        }
        candidates.extend(token.rsplit_once(':').map(|(a, _)| a));
        for c in candidates {
            if let Ok(ip) = c.parse::<IpAddr>() {
                out.push(match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                });
            }
        }
    }
    out
}
