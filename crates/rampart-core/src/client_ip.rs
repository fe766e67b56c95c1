//! Client IP resolution behind trusted proxies.
//!
//! The client address is the socket peer, unless the peer is a trusted proxy. Then the address
//! comes from `X-Forwarded-For` (or, when that is absent, `Forwarded`), read right to left,
//! skipping hops that are themselves trusted proxies. The first untrusted hop is the client.
//!
//! # Security
//! - Forwarding headers from an untrusted peer are ignored entirely: a client cannot choose its
//!   own address by sending `X-Forwarded-For`.
//! - Reading right to left means only hops appended by trusted proxies are believed; whatever
//!   the client put at the left end is never reached while an untrusted hop stands to its right.
//! - A malformed hop stops the walk and the last trusted address is used, so garbage never
//!   becomes a client address.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The resolved client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A list of networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// A CIDR or address that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("not a CIDR network or IP address: {0:?}")]
pub struct TrustedProxiesError(pub String);

impl TrustedProxies {
    /// No trusted proxies: the socket peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts the given networks. A network written in IPv4-mapped IPv6 form
    /// (`::ffff:10.0.0.0/104`) is stored as the IPv4 network it stands for, since peers are
    /// compared in IPv4 form.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets: nets.into_iter().map(canonical_net).collect() }
    }

    /// Parses a comma-separated list of CIDRs or plain addresses.
    pub fn parse_list(text: &str) -> Result<Self, TrustedProxiesError> {
        let mut nets = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = IpNet::from_str(part)
                .or_else(|_| IpAddr::from_str(part).map(IpNet::from))
                .map_err(|_| TrustedProxiesError(part.to_owned()))?;
            nets.push(net);
        }
        Ok(Self::new(nets))
    }

    /// The networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is inside a trusted network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Resolves the client address from the peer and the forwarding headers' values.
    /// `x_forwarded_for` holds every `X-Forwarded-For` header value in order received;
    /// `forwarded` every `Forwarded` value; the latter is read only when the former is empty.
    pub fn resolve(&self, peer: IpAddr, x_forwarded_for: &[&str], forwarded: &[&str]) -> ClientIp {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return ClientIp(peer);
        }
        let hops: Vec<Option<IpAddr>> = if x_forwarded_for.iter().any(|v| !v.trim().is_empty()) {
            x_forwarded_for
                .iter()
                .flat_map(|v| v.split(','))
                .map(|h| parse_xff_hop(h.trim()))
                .collect()
        } else {
            forwarded.iter().flat_map(|v| v.split(',')).map(parse_forwarded_element).collect()
        };
        let mut current = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                None => return ClientIp(current),
                Some(ip) => {
                    current = canonical(ip);
                    if !self.contains(current) {
                        return ClientIp(current);
                    }
                }
            }
        }
        ClientIp(current)
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:a.b.c.d/n`, n ≥ 96) as its IPv4 network.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop: an address, possibly `[v6]:port` or `v4:port`.
fn parse_xff_hop(hop: &str) -> Option<IpAddr> {
    parse_node(hop)
}

fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if node.is_empty() || node.len() > 64 {
        return None;
    }
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        if !(tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return IpAddr::from_str(addr).ok().filter(IpAddr::is_ipv6);
    }
    let (addr, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    IpAddr::from_str(addr).ok().filter(IpAddr::is_ipv4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The `for=` address of one `Forwarded` element (RFC 7239), e.g. `for=192.0.2.1;proto=https`
/// or `for="[2001:db8::1]:4711"`. `None` for an element without a usable `for=` (malformed,
/// or an obfuscated identifier such as `for=_hidden` or `for=unknown`).
pub fn forwarded_element_ip(element: &str) -> Option<IpAddr> {
    parse_forwarded_element(element)
}

fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    for pair in element.split(';') {
        let (k, v) = match pair.trim().split_once('=') {
            Some(kv) => kv,
            None => continue,
        };
        if k.trim().eq_ignore_ascii_case("for") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(v);
            return parse_node(v);
        }
    }
    None
}

/// Appends `ip` to `out` as text, exactly as its `Display` writes it. IPv4 addresses, the
/// common case on every request, are written digit by digit without the formatting machinery.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip` as text, as [`push_ip`] writes it.
pub fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_text_matches_display_for_every_octet_and_for_ipv6() {
        for a in 0..=255u8 {
            for ip in [
                IpAddr::from([a, 0, 10, 255]),
                IpAddr::from([9, a, 99, 100]),
                IpAddr::from([200, 1, a, 7]),
                IpAddr::from([1, 2, 3, a]),
            ] {
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for text in ["::1", "2001:db8::7", "::ffff:10.0.0.1", "fe80::1:2:3:4"] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let mut out = String::from("x, ");
        push_ip(&mut out, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(out, "x, 127.0.0.1");
    }

    #[test]
    fn ipv4_mapped_networks_trust_the_ipv4_peers_they_stand_for() {
        let t = TrustedProxies::parse_list("::ffff:10.0.0.0/104, ::ffff:192.168.1.1").unwrap();
        assert_eq!(t.nets()[0].to_string(), "10.0.0.0/8");
        assert_eq!(t.nets()[1].to_string(), "192.168.1.1/32");
        for peer in ["10.2.3.4", "::ffff:10.2.3.4", "192.168.1.1"] {
            assert!(t.contains(ip(peer)), "{peer}");
        }
        for peer in ["11.0.0.1", "192.168.1.2", "::1"] {
            assert!(!t.contains(ip(peer)), "{peer}");
        }
        assert_eq!(t.resolve(ip("10.0.0.1"), &["198.51.100.7"], &[]), ClientIp(ip("198.51.100.7")));
        // A short IPv6 prefix that merely covers the mapped range stays IPv6.
        let wide = TrustedProxies::parse_list("::/0").unwrap();
        assert_eq!(wide.nets()[0].to_string(), "::/0");
    }

    #[test]
    fn resolves_table_of_cases() {
        let trusted = TrustedProxies::parse_list("10.0.0.0/8, 192.168.1.1, ::1").unwrap();
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            // untrusted peer: headers ignored
            ("203.0.113.9", &["1.2.3.4"], &[], "203.0.113.9"),
            ("203.0.113.9", &[], &["for=1.2.3.4"], "203.0.113.9"),
            // trusted peer, one hop
            ("10.0.0.1", &["198.51.100.7"], &[], "198.51.100.7"),
            // client-supplied left part is skipped: rightmost untrusted wins
            ("10.0.0.1", &["6.6.6.6, 198.51.100.7"], &[], "198.51.100.7"),
            // trusted hops skipped right to left
            ("10.0.0.1", &["198.51.100.7, 10.1.1.1, 192.168.1.1"], &[], "198.51.100.7"),
            // several headers concatenate
            ("10.0.0.1", &["6.6.6.6", "198.51.100.7"], &[], "198.51.100.7"),
            // garbage stops the walk at the last trusted hop
            ("10.0.0.1", &["198.51.100.7, nonsense"], &[], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7, 10.2.2.2, ,"], &[], "10.0.0.1"),
            // all trusted: leftmost
            ("10.0.0.1", &["10.9.9.9"], &[], "10.9.9.9"),
            // no headers: the peer
            ("10.0.0.1", &[], &[], "10.0.0.1"),
            // ports and brackets
            ("10.0.0.1", &["198.51.100.7:1234"], &[], "198.51.100.7"),
            ("10.0.0.1", &["[2001:db8::5]:443"], &[], "2001:db8::5"),
            // Forwarded
            ("10.0.0.1", &[], &["for=198.51.100.7;proto=https"], "198.51.100.7"),
            ("10.0.0.1", &[], &["for=\"[2001:db8::1]:4711\""], "2001:db8::1"),
            ("10.0.0.1", &[], &["for=6.6.6.6, for=198.51.100.8"], "198.51.100.8"),
            ("10.0.0.1", &[], &["for=unknown"], "10.0.0.1"),
            ("10.0.0.1", &[], &["for=_hidden"], "10.0.0.1"),
            // X-Forwarded-For takes precedence over Forwarded
            ("10.0.0.1", &["198.51.100.7"], &["for=198.51.100.8"], "198.51.100.7"),
            // IPv6 loopback trusted; IPv4-mapped peers are canonical
            ("::1", &["198.51.100.7"], &[], "198.51.100.7"),
            ("::ffff:10.0.0.1", &["198.51.100.7"], &[], "198.51.100.7"),
        ];
        for (peer, xff, fwd, want) in cases {
            let got = trusted.resolve(ip(peer), xff, fwd);
            assert_eq!(got, ClientIp(ip(want)), "peer={peer} xff={xff:?} fwd={fwd:?}");
        }
    }

    #[test]
    fn rejects_malformed_trusted_proxy_lists() {
        assert!(TrustedProxies::parse_list("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse_list("example.com").is_err());
        assert!(TrustedProxies::parse_list("").unwrap().nets().is_empty());
    }

    proptest! {
        #[test]
        fn untrusted_peer_is_always_the_client(a: u8, b: u8, header in ".{0,200}") {
            let trusted = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
            let peer = IpAddr::from([203, 0, a, b]);
            prop_assert_eq!(trusted.resolve(peer, &[&header], &[&header]), ClientIp(peer));
        }

        #[test]
        fn never_panics_and_answers_peer_or_a_listed_hop(header in ".{0,300}", fwd in ".{0,300}") {
            let trusted = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
            let peer = ip("10.0.0.1");
            let got = trusted.resolve(peer, &[&header], &[&fwd]);
            prop_assert!(got.0 == peer || header.contains(&got.0.to_string()) || fwd.contains(&got.0.to_string())
                || got.0.is_ipv6());
        }

        #[test]
        fn client_cannot_spoof_past_a_trusted_proxy(spoof_a: u8, real_b: u8) {
            let trusted = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
            let real = IpAddr::from([198, 51, 100, real_b]);
            let header = format!("{}, {real}", IpAddr::from([1, 1, 1, spoof_a]));
            prop_assert_eq!(trusted.resolve(ip("10.0.0.1"), &[&header], &[]), ClientIp(real));
        }
    }
}
