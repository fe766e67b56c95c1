use serde_json::json;
use time::macros::datetime;

use super::*;

fn full() -> SessionRecord {
    let now = datetime!(2030-01-01 12:34:56.789 UTC);
    let mut data = Map::new();
    data.insert("email".into(), json!("user1@example.com"));
    data.insert("role".into(), json!("member"));
    SessionRecord {
        handle: rampart_core::token::random_id(16),
        user_id: "usr_0000000001".into(),
        created_at: now,
        last_seen_at: now + time::Duration::seconds(5),
        absolute_expires_at: now + time::Duration::hours(12),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101".into()),
        auth_method: "password".into(),
        data,
    }
}

fn round_trip(r: &SessionRecord) -> SessionRecord {
    let blob = encode(r);
    assert_eq!(user_id(&blob), Some(r.user_id.as_str()));
    decode(&blob, r.last_seen_at).expect("decodes")
}

#[test]
fn a_typical_record_round_trips_in_few_bytes() {
    let r = full();
    assert_eq!(round_trip(&r), r);
    let blob = encode(&r);
    // Packed handle (16 of 22 bytes), IPv4 in 4 bytes, one byte for "password".
    assert!(blob.len() < 170, "{} bytes", blob.len());
}

#[test]
fn empty_and_missing_fields_round_trip() {
    let epoch = OffsetDateTime::UNIX_EPOCH;
    let r = SessionRecord {
        handle: String::new(),
        user_id: String::new(),
        created_at: epoch,
        last_seen_at: epoch,
        absolute_expires_at: epoch,
        ip: None,
        user_agent: None,
        auth_method: String::new(),
        data: Map::new(),
    };
    assert_eq!(round_trip(&r), r);
    let some_empty =
        SessionRecord { ip: Some(String::new()), user_agent: Some(String::new()), ..r };
    assert_eq!(round_trip(&some_empty), some_empty);
}

#[test]
fn unicode_odd_handles_and_addresses_round_trip() {
    let cases = [
        ("Zoë 🦀 ユーザー", "not base64 ✓", "2001:db8::1"),
        ("u", "AAAA", "::ffff:192.0.2.1"),
        ("u", "AB", "010.0.0.1"),
        ("u", "abc=", "fe80::1%eth0"),
        ("u", "A+/=", "192.0.2.1 "),
        ("u", "AAAAAAAAAAAAAAAAAAAAAB", "2001:0db8::1"),
    ];
    for (user, handle, ip) in cases {
        let r = SessionRecord {
            user_id: user.into(),
            handle: handle.into(),
            ip: Some(ip.into()),
            auth_method: "password+totp ünïcode".into(),
            ..full()
        };
        assert_eq!(round_trip(&r), r, "{handle:?} {ip:?}");
    }
}

#[test]
fn extreme_times_round_trip() {
    let times = [
        OffsetDateTime::UNIX_EPOCH,
        datetime!(-9999-01-01 00:00:00 UTC),
        datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        datetime!(1969-12-31 23:59:59.5 UTC),
    ];
    for a in times {
        for b in times {
            let r =
                SessionRecord { created_at: a, absolute_expires_at: b, last_seen_at: b, ..full() };
            assert_eq!(round_trip(&r), r, "{a} {b}");
        }
    }
}

#[test]
fn other_offsets_come_back_as_the_same_instant_in_utc() {
    let t = datetime!(2030-01-01 12:00 +05:30);
    let r = SessionRecord { created_at: t, ..full() };
    let back = round_trip(&r);
    assert_eq!(back.created_at, t);
    assert_eq!(back.created_at.offset(), time::UtcOffset::UTC);
}

#[test]
fn every_kind_of_json_value_round_trips() {
    let mut data = Map::new();
    data.insert("null".into(), Value::Null);
    data.insert("bools".into(), json!([true, false]));
    data.insert(
        "numbers".into(),
        json!([0, 1, 127, 128, u64::MAX, -1, i64::MIN, 0.1, -2.5e300, 1e-300, 3.0]),
    );
    data.insert("nested".into(), json!({"a": {"b": [[], {}, "ünï", ""]}}));
    data.insert("".into(), json!("empty key"));
    data.insert("large".into(), json!("x".repeat(100_000)));
    data.insert("many".into(), Value::Array((0..10_000).map(|i| json!(i)).collect()));
    let r = SessionRecord { data, ..full() };
    assert_eq!(round_trip(&r), r);
}

#[test]
fn truncated_or_extended_bytes_are_rejected() {
    let r = full();
    let blob = encode(&r);
    for n in 0..blob.len() {
        assert_eq!(decode(&blob[..n], r.last_seen_at), None, "{n} bytes");
    }
    let mut longer = blob.to_vec();
    longer.push(0);
    assert_eq!(decode(&longer, r.last_seen_at), None);
}

#[test]
fn varints_and_zigzag_round_trip() {
    for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(Reader { buf: &out }.varint(), Some(v));
    }
    for v in [0, 1, -1, i64::MAX, i64::MIN, 1_893_456_000] {
        assert_eq!(unzigzag(zigzag(v)), v);
    }
}
