//! Where to send the browser after login or logout: only a relative path on this origin.
//!
//! # Security considerations
//! A `return_to` parameter is attacker-controlled: a link to
//! `/login?return_to=https://evil.example` would otherwise turn the login page into a
//! phishing relay. [`safe_return_to`] accepts only a path that starts with a single `/` and
//! refuses, at every level of percent-decoding (up to 4 levels; deeper encodings are refused):
//! - anything that does not start with `/`: absolute URLs, schemes (`javascript:`,
//!   `data:`), relative paths;
//! - `//host` and `/\host` (browsers read a backslash as a slash);
//! - backslashes anywhere;
//! - control characters anywhere: browsers drop tab, CR and LF from URLs, so `/\t/evil`
//!   becomes `//evil`; CR/LF would also split the `Location` header;
//! - paths whose dot segments resolve to `//…` (`/..//evil`), a dot also counting when written
//!   `%2e`, as browsers resolve it (`/x%23/%2e%2e//evil`);
//! - more than 2048 bytes, as given or once percent-encoded (so the value returned, checked
//!   again when the login form is submitted, is accepted again).
//!
//! The result is the input with bytes outside printable ASCII percent-encoded, so it is always
//! a valid header value. Targets are checked when the login form is rendered and again when it
//! is submitted.

/// Longest accepted target.
pub const MAX_LEN: usize = 2048;

/// Levels of percent-decoding examined.
const MAX_DECODE_LEVELS: usize = 4;

/// The target if it is a safe same-origin relative path, else `None`.
pub fn safe_return_to(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN {
        return None;
    }
    let mut level = raw.as_bytes().to_vec();
    let mut stable = false;
    for _ in 0..=MAX_DECODE_LEVELS {
        if !safe_level(&level) {
            return None;
        }
        let next = percent_decode(&level);
        if next == level {
            stable = true;
            break;
        }
        level = next;
    }
    if !stable {
        return None;
    }
    // Encoding can triple the length; a result over the limit would be refused on its re-check.
    Some(encode_unsafe_bytes(raw)).filter(|out| out.len() <= MAX_LEN)
}

/// One decoding level: starts with a single `/`, no backslash, no control character (C0, DEL,
/// or a C1 control in UTF-8), and the dot-resolved path does not start with `//`.
fn safe_level(b: &[u8]) -> bool {
    if b.first() != Some(&b'/') || b.get(1) == Some(&b'/') {
        return false;
    }
    if b.iter().any(|&c| c == b'\\' || c < 0x20 || c == 0x7f) {
        return false;
    }
    if String::from_utf8_lossy(b).chars().any(char::is_control) {
        return false;
    }
    let path_end = b.iter().position(|&c| c == b'?' || c == b'#').unwrap_or(b.len());
    !resolves_to_double_slash(&b[..path_end])
}

/// Whether removing dot segments (RFC 3986 5.2.4) from `path` gives something starting `//`.
fn resolves_to_double_slash(path: &[u8]) -> bool {
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = path.split(|&c| c == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match dot_segment(seg) {
            1 => {
                if i == last {
                    out.push(b"");
                }
            }
            2 => {
                out.pop();
                if i == last {
                    out.push(b"");
                }
            }
            _ => out.push(seg),
        }
    }
    // "/" + first segment; an empty first segment followed by more means "//".
    out.len() > 1 && out.first().is_some_and(|s| s.is_empty())
}

/// 1 for a `.` segment, 2 for a `..` segment, else 0. As in the WHATWG URL standard, a dot
/// also written `%2e` (any case) counts: a browser resolves `/x/%2e%2e//evil` to `//evil`.
fn dot_segment(seg: &[u8]) -> usize {
    let mut rest = seg;
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return 0;
        }
        dots += 1;
    }
    if dots <= 2 {
        dots
    } else {
        0
    }
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let hex = |j: usize| input.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Percent-encodes bytes outside printable ASCII (space included).
fn encode_unsafe_bytes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a value for a query string: everything but unreserved characters.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[path = "return_to_tests.rs"]
mod tests;
