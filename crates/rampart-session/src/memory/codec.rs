//! The compact binary form in which the memory store keeps a record.
//!
//! One allocation per session: the record's fields (all but `last_seen_at`, which the node
//! keeps as plain integers so a touch never re-encodes) written one after another with
//! variable-length integers. The user id comes first, so the per-user lists can read it
//! without decoding the rest.
//!
//! Layout, in order:
//! - user id: length (varint) and UTF-8 bytes;
//! - handle: varint `len << 1 | packed`, then either the base64url-decoded bytes (`packed`,
//!   when the handle is canonical unpadded base64url, as generated handles are) or the text;
//! - created at: zigzag varint unix seconds, varint nanoseconds;
//! - absolute expiry: zigzag varint seconds after the creation (wrapping), varint nanoseconds;
//! - ip: tag byte (0 none, 1 IPv4 with 4 bytes, 2 IPv6 with 16 bytes, 3 text), when the
//!   address's canonical text is the stored text, else as text;
//! - user agent: varint 0 for none, else `len + 1` and the bytes;
//! - auth method: varint index into [`KNOWN_AUTH_METHODS`], or `len + KNOWN_AUTH_METHODS.len()`
//!   and the bytes;
//! - data: entry count, then each key (string) and value (tagged, see [`put_value`]).
//!
//! Times are stored as an instant and read back in UTC (the clocks give UTC times).

use std::net::IpAddr;

use base64::Engine;
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;

use crate::record::SessionRecord;

/// Authentication methods stored as one byte.
const KNOWN_AUTH_METHODS: [&str; 2] = ["password", "password+totp"];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A time as unix seconds and nanoseconds: ordered like the instants.
pub(super) type Stamp = (i64, u32);

pub(super) fn stamp(t: OffsetDateTime) -> Stamp {
    (t.unix_timestamp(), t.nanosecond())
}

pub(super) fn from_stamp((secs, nanos): Stamp) -> Option<OffsetDateTime> {
    let total = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    OffsetDateTime::from_unix_timestamp_nanos(total).ok()
}

/// The record without `last_seen_at`, as one boxed byte string.
pub(super) fn encode(r: &SessionRecord) -> Box<[u8]> {
    let mut out = Vec::with_capacity(
        64 + r.user_id.len()
            + r.handle.len()
            + r.ip.as_ref().map_or(0, String::len)
            + r.user_agent.as_ref().map_or(0, String::len)
            + r.auth_method.len()
            + r.data.len() * 32,
    );
    put_str(&mut out, &r.user_id);
    put_handle(&mut out, &r.handle);
    let (created_secs, created_nanos) = stamp(r.created_at);
    put_varint(&mut out, zigzag(created_secs));
    put_varint(&mut out, u64::from(created_nanos));
    let (abs_secs, abs_nanos) = stamp(r.absolute_expires_at);
    put_varint(&mut out, zigzag(abs_secs.wrapping_sub(created_secs)));
    put_varint(&mut out, u64::from(abs_nanos));
    put_ip(&mut out, r.ip.as_deref());
    match &r.user_agent {
        None => put_varint(&mut out, 0),
        Some(ua) => {
            put_varint(&mut out, ua.len() as u64 + 1);
            out.extend_from_slice(ua.as_bytes());
        }
    }
    match KNOWN_AUTH_METHODS.iter().position(|m| *m == r.auth_method) {
        Some(i) => put_varint(&mut out, i as u64),
        None => {
            put_varint(&mut out, (r.auth_method.len() + KNOWN_AUTH_METHODS.len()) as u64);
            out.extend_from_slice(r.auth_method.as_bytes());
        }
    }
    put_map(&mut out, &r.data);
    // A fresh allocation of the exact size: shrinking `out` in place would leave its spare
    // tail as a heap fragment beside every record.
    Box::from(out.as_slice())
}

/// The user id of an encoded record, read without decoding the rest.
pub(super) fn user_id(blob: &[u8]) -> Option<&str> {
    Reader { buf: blob }.str()
}

/// The record encoded in `blob`, with `last_seen_at` set to `last_seen`. `None` if the bytes
/// are not an encoded record (never for bytes from [`encode`]).
pub(super) fn decode(blob: &[u8], last_seen: OffsetDateTime) -> Option<SessionRecord> {
    let mut r = Reader { buf: blob };
    let user_id = r.str()?.to_owned();
    let handle = r.handle()?;
    let created_secs = unzigzag(r.varint()?);
    let created_at = from_stamp((created_secs, r.nanos()?))?;
    let abs_secs = created_secs.wrapping_add(unzigzag(r.varint()?));
    let absolute_expires_at = from_stamp((abs_secs, r.nanos()?))?;
    let ip = r.ip()?;
    let user_agent = match r.varint()? {
        0 => None,
        n => Some(r.text(usize::try_from(n - 1).ok()?)?.to_owned()),
    };
    let auth_method = match usize::try_from(r.varint()?).ok()? {
        i if i < KNOWN_AUTH_METHODS.len() => KNOWN_AUTH_METHODS[i].to_owned(),
        n => r.text(n - KNOWN_AUTH_METHODS.len())?.to_owned(),
    };
    let data = r.map()?;
    if !r.buf.is_empty() {
        return None;
    }
    Some(SessionRecord {
        handle,
        user_id,
        created_at,
        last_seen_at: last_seen,
        absolute_expires_at,
        ip,
        user_agent,
        auth_method,
        data,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_handle(out: &mut Vec<u8>, handle: &str) {
    if let Ok(bytes) = B64.decode(handle) {
        // The engine rejects non-canonical trailing bits; check anyway that the text returns.
        if B64.encode(&bytes) == handle {
            put_varint(out, (bytes.len() as u64) << 1 | 1);
            out.extend_from_slice(&bytes);
            return;
        }
    }
    put_varint(out, (handle.len() as u64) << 1);
    out.extend_from_slice(handle.as_bytes());
}

fn put_ip(out: &mut Vec<u8>, ip: Option<&str>) {
    let Some(text) = ip else {
        out.push(0);
        return;
    };
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if a.to_string() == text => {
            out.push(1);
            out.extend_from_slice(&a.octets());
        }
        Ok(IpAddr::V6(a)) if a.to_string() == text => {
            out.push(2);
            out.extend_from_slice(&a.octets());
        }
        _ => {
            out.push(3);
            put_str(out, text);
        }
    }
}

fn put_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    put_varint(out, map.len() as u64);
    for (k, v) in map {
        put_str(out, k);
        put_value(out, v);
    }
}

/// A JSON value: a tag byte (0 null, 1 false, 2 true, 3 unsigned integer as a varint,
/// 4 negative integer as a zigzag varint, 5 float as its 8 bytes, 6 any other number as
/// its text, 7 string, 8 array with a count, 9 object) and the payload.
fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(1 + u8::from(*b)),
        Value::Number(n) => put_number(out, n),
        Value::String(s) => {
            out.push(7);
            put_str(out, s);
        }
        Value::Array(items) => {
            out.push(8);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(9);
            put_map(out, map);
        }
    }
}

fn put_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64().filter(|&u| Number::from(u) == *n) {
        out.push(3);
        put_varint(out, u);
    } else if let Some(i) = n.as_i64().filter(|&i| Number::from(i) == *n) {
        out.push(4);
        put_varint(out, zigzag(i));
    } else if let Some(f) = n.as_f64().filter(|&f| Number::from_f64(f).as_ref() == Some(n)) {
        out.push(5);
        out.extend_from_slice(&f.to_le_bytes());
    } else {
        out.push(6);
        put_str(out, &n.to_string());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    fn nanos(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    fn text(&mut self, n: usize) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.len()?;
        self.text(n)
    }

    fn handle(&mut self) -> Option<String> {
        let v = self.len()?;
        let (n, packed) = (v >> 1, v & 1 == 1);
        if packed {
            Some(B64.encode(self.bytes(n)?))
        } else {
            Some(self.text(n)?.to_owned())
        }
    }

    fn ip(&mut self) -> Option<Option<String>> {
        Some(match self.byte()? {
            0 => None,
            1 => {
                let o: [u8; 4] = self.bytes(4)?.try_into().ok()?;
                Some(rampart_core::client_ip::ip_text(std::net::Ipv4Addr::from(o).into()))
            }
            2 => {
                let o: [u8; 16] = self.bytes(16)?.try_into().ok()?;
                Some(std::net::Ipv6Addr::from(o).to_string())
            }
            3 => Some(self.str()?.to_owned()),
            _ => return None,
        })
    }

    fn map(&mut self) -> Option<Map<String, Value>> {
        let n = self.len()?;
        let mut map = Map::new();
        for _ in 0..n {
            let k = self.str()?.to_owned();
            let v = self.value()?;
            map.insert(k, v);
        }
        Some(map)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(self.varint()?.into()),
            4 => Value::Number(unzigzag(self.varint()?).into()),
            5 => {
                let b: [u8; 8] = self.bytes(8)?.try_into().ok()?;
                Value::Number(Number::from_f64(f64::from_le_bytes(b))?)
            }
            6 => Value::Number(self.str()?.parse().ok()?),
            7 => Value::String(self.str()?.to_owned()),
            8 => {
                let n = self.len()?;
                // Every item takes at least one byte: never reserve more than is left.
                let mut items = Vec::with_capacity(n.min(self.buf.len()));
                for _ in 0..n {
                    items.push(self.value()?);
                }
                Value::Array(items)
            }
            9 => Value::Object(self.map()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests;
