//! The canonical encoding of an event and its hash.
//!
//! # Encoding (version 1)
//!
//! Every field except `hash`, in this fixed order, with `str(s)` meaning the byte length of `s`
//! as a big-endian `u64` followed by its UTF-8 bytes, and `opt(x)` meaning a `0x00` byte when
//! absent or a `0x01` byte followed by `x`:
//!
//! ```text
//! "rampart-audit/event/v1\n"
//! str(id)  i64be(ts as microseconds since the Unix epoch)  str(instance)  u64be(seq)
//! str(event name)  str(outcome name)
//! opt(opt(str(actor.user_id)) opt(str(actor.email)))
//! opt(str(session))  opt(str(ip))  opt(str(user_agent))  opt(str(request_id))
//! opt(str(resource.type) str(resource.id))
//! str(canonical JSON of details)
//! prev_hash as 32 raw bytes
//! ```
//!
//! Canonical JSON of `details`: objects with keys sorted by their UTF-8 bytes, no whitespace,
//! strings escaped only where JSON requires (`"`, `\` and control characters, the latter as
//! `\u00XX`), numbers as serde_json prints them (integers in decimal, floats in shortest
//! round-trip form).
//!
//! `hash = SHA-256(prev_hash as 32 raw bytes || canonical)`, written as lowercase hex. The first
//! event of a chain has `prev_hash` = [`GENESIS_HASH`] (64 zeros).
//!
//! # Security
//! Length prefixes make the encoding injective: no two different events encode to the same
//! bytes, so no field can be shifted into its neighbour without changing the hash. The encoding
//! depends only on field values, never on JSON key order or whitespace, so an event read back
//! from any store or export hashes the same.

use sha2::{Digest, Sha256};

use crate::error::AuditError;
use crate::event::{to_micros, AuditEvent};

/// `prev_hash` of the first event of every chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"rampart-audit/event/v1\n";

/// The canonical encoding of `event` (every field but `hash`).
pub fn canonical_bytes(event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
    let prev = decode_hex32(&event.prev_hash).ok_or(AuditError::MalformedHex("prev_hash"))?;
    let mut buf = Vec::with_capacity(256);
    encode_into(&mut buf, event, &prev);
    Ok(buf)
}

/// The hash `event` should carry: SHA-256 of its `prev_hash` bytes and canonical encoding.
pub fn event_hash(event: &AuditEvent) -> Result<[u8; 32], AuditError> {
    let prev = decode_hex32(&event.prev_hash).ok_or(AuditError::MalformedHex("prev_hash"))?;
    let mut buf = Vec::with_capacity(256);
    encode_into(&mut buf, event, &prev);
    Ok(hash_with_prev(&prev, &buf))
}

pub(crate) fn hash_with_prev(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// Decodes exactly 64 hex characters (either case).
pub(crate) fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Whether `text` is the hex form of `bytes` (64 characters, either case), without decoding it:
/// the verifier's fast path, since a stored hash almost always matches the one it expects.
pub(crate) fn is_hex_of(text: &str, bytes: &[u8; 32]) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let text = text.as_bytes();
    if text.len() != 64 {
        return false;
    }
    // No early exit, so the loop compiles to straight-line code; hashes are public.
    let mut diff = 0u8;
    for (pair, b) in text.chunks_exact(2).zip(bytes) {
        diff |= pair[0].to_ascii_lowercase() ^ HEX[usize::from(b >> 4)];
        diff |= pair[1].to_ascii_lowercase() ^ HEX[usize::from(b & 0xf)];
    }
    diff == 0
}

/// Clears `buf` and writes the canonical encoding of `event` with `prev` as its previous hash.
pub(crate) fn encode_into(buf: &mut Vec<u8>, event: &AuditEvent, prev: &[u8; 32]) {
    buf.clear();
    buf.extend_from_slice(DOMAIN);
    put_str(buf, &event.id);
    buf.extend_from_slice(&to_micros(event.ts).to_be_bytes());
    put_str(buf, &event.instance);
    buf.extend_from_slice(&event.seq.to_be_bytes());
    put_str(buf, event.event.as_str());
    put_str(buf, event.outcome.as_str());
    match &event.actor {
        None => buf.push(0),
        Some(actor) => {
            buf.push(1);
            put_opt(buf, actor.user_id.as_deref());
            put_opt(buf, actor.email.as_deref());
        }
    }
    put_opt(buf, event.session.as_deref());
    put_opt(buf, event.ip.as_deref());
    put_opt(buf, event.user_agent.as_deref());
    put_opt(buf, event.request_id.as_deref());
    match &event.resource {
        None => buf.push(0),
        Some(r) => {
            buf.push(1);
            put_str(buf, &r.kind);
            put_str(buf, &r.id);
        }
    }
    let len_at = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    write_object(buf, &event.details);
    let json_len = (buf.len() - len_at - 8) as u64;
    buf[len_at..len_at + 8].copy_from_slice(&json_len.to_be_bytes());
    buf.extend_from_slice(prev);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s);
        }
    }
}

fn write_value(buf: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => buf.extend_from_slice(b"null"),
        Value::Bool(true) => buf.extend_from_slice(b"true"),
        Value::Bool(false) => buf.extend_from_slice(b"false"),
        Value::Number(n) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(buf, "{n}");
        }
        Value::String(s) => write_json_str(buf, s),
        Value::Array(items) => {
            buf.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_value(buf, item);
            }
            buf.push(b']');
        }
        Value::Object(map) => write_object(buf, map),
    }
}

fn write_object(buf: &mut Vec<u8>, map: &serde_json::Map<String, serde_json::Value>) {
    buf.push(b'{');
    // serde_json keeps keys sorted unless its `preserve_order` feature is on somewhere in the
    // build; sort only when needed, so the usual case does not allocate.
    let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
    if sorted {
        for (i, (k, v)) in map.iter().enumerate() {
            write_entry(buf, i, k, v);
        }
    } else {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (i, (k, v)) in entries.into_iter().enumerate() {
            write_entry(buf, i, k, v);
        }
    }
    buf.push(b'}');
}

fn write_entry(buf: &mut Vec<u8>, i: usize, key: &str, value: &serde_json::Value) {
    if i > 0 {
        buf.push(b',');
    }
    write_json_str(buf, key);
    buf.push(b':');
    write_value(buf, value);
}

fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            buf.extend_from_slice(&bytes[start..i]);
            match b {
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\\' => buf.extend_from_slice(b"\\\\"),
                _ => buf.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]),
            }
            start = i + 1;
        }
    }
    buf.extend_from_slice(&bytes[start..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, EventKind, NewEvent};
    use serde_json::json;
    use time::macros::datetime;

    fn sample() -> AuditEvent {
        let mut chain = Chain::new("node-a");
        chain.seal(
            NewEvent::failure(EventKind::LoginFailed)
                .email("ann@example.com")
                .ip("203.0.113.9")
                .user_agent("curl/8 \"quoted\"\n")
                .request_id("req-1")
                .resource("user", "u1")
                .detail("reason", "bad_password")
                .detail("nested", json!({"z": 1.5, "a": [true, null, "\u{1}"], "m": -3})),
            datetime!(2030-01-02 03:04:05.123456789 UTC),
        )
    }

    #[test]
    fn canonical_encoding_is_stable_across_a_json_round_trip() {
        let ev = sample();
        let text = serde_json::to_string(&ev).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical_bytes(&back).unwrap(), canonical_bytes(&ev).unwrap());
        assert_eq!(hex::encode(event_hash(&back).unwrap()), ev.hash);
    }

    #[test]
    fn canonical_encoding_ignores_json_key_order_and_whitespace() {
        let ev = sample();
        let value = serde_json::to_value(&ev).unwrap();
        // Fields in reverse order, pretty-printed values, extra spaces.
        let fields: Vec<String> = value
            .as_object()
            .unwrap()
            .iter()
            .rev()
            .map(|(k, v)| format!("\"{k}\" : {}", serde_json::to_string_pretty(v).unwrap()))
            .collect();
        let text = format!("{{ {} }}", fields.join(" ,\n "));
        assert!(text.find("\"user_agent\"").unwrap() < text.find("\"actor\"").unwrap());
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(hex::encode(event_hash(&back).unwrap()), ev.hash);
    }

    #[test]
    fn details_are_written_as_sorted_compact_json() {
        let mut buf = Vec::new();
        write_value(&mut buf, &json!({"b": [1, "x\"y"], "a": {"d": null, "c": "\u{7}"}}));
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            r#"{"a":{"c":"\u0007","d":null},"b":[1,"x\"y"]}"#
        );
    }

    #[test]
    fn changing_any_field_changes_the_encoding() {
        let ev = sample();
        let base = canonical_bytes(&ev).unwrap();
        let mut variants = Vec::new();
        let mut e = ev.clone();
        e.ip = None;
        variants.push(e);
        let mut e = ev.clone();
        e.user_agent = Some(String::new());
        variants.push(e);
        let mut e = ev.clone();
        e.seq += 1;
        variants.push(e);
        let mut e = ev.clone();
        e.ts += time::Duration::microseconds(1);
        variants.push(e);
        let mut e = ev.clone();
        e.details.insert("reason".into(), json!("other"));
        variants.push(e);
        let mut e = ev;
        e.resource = Some(crate::Resource { kind: "use".into(), id: "ru1".into() });
        variants.push(e);
        for v in variants {
            assert_ne!(canonical_bytes(&v).unwrap(), base);
        }
    }

    #[test]
    fn hex_comparison_takes_either_case_and_nothing_else() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        let lower = hex::encode(bytes);
        assert!(is_hex_of(&lower, &bytes));
        assert!(is_hex_of(&lower.to_uppercase(), &bytes));
        assert_eq!(decode_hex32(&lower.to_uppercase()), Some(bytes));
        let mut other = bytes;
        other[31] ^= 1;
        assert!(!is_hex_of(&lower, &other));
        assert!(!is_hex_of(&lower[..62], &bytes));
        assert!(!is_hex_of(&format!("{lower}00"), &bytes));
        // A character that is not hex never stands in for a digit, whatever its bits.
        for (i, c) in lower.char_indices() {
            for bad in ['g', 'G', ' ', '\u{10}', char::from(c as u8 ^ 0x20)] {
                if bad.eq_ignore_ascii_case(&c) {
                    continue;
                }
                let mut t = lower.clone();
                t.replace_range(i..=i, &bad.to_string());
                assert!(!is_hex_of(&t, &bytes), "{t}");
            }
        }
    }

    #[test]
    fn malformed_prev_hash_is_an_error() {
        let mut ev = sample();
        ev.prev_hash = "zz".into();
        assert!(matches!(event_hash(&ev), Err(AuditError::MalformedHex("prev_hash"))));
    }
}
