use super::*;
use proptest::prelude::*;

/// Targets that must be refused.
pub(crate) const UNSAFE: &[&str] = &[
    "",
    "https://evil.example",
    "http://evil.example/path",
    "HTTPS://evil.example",
    "//evil.example",
    "//evil.example/path",
    "///evil.example",
    "////evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "/a\\b",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox",
    "evil.example",
    "relative/path",
    "?x=1",
    "#frag",
    "%2F%2Fevil.example",
    "/%2Fevil.example",
    "/%2fevil.example",
    "/%5Cevil.example",
    "/%5cevil.example",
    "/%252F%252Fevil.example",
    "/%25252Fevil.example",
    "/%2525252F%2525252Fevil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "\t//evil.example",
    "/\r\n/evil.example",
    "/%0d%0a/evil.example",
    "/%0D%0ASet-Cookie:%20x=y",
    "/x\r\nSet-Cookie: x=y",
    "/\n/evil.example",
    "/%0a/evil.example",
    "/%00",
    "/a%00b",
    "/\u{0}",
    "/\u{7f}",
    "/%7f",
    "/\u{85}/evil",
    "/%C2%85/evil",
    "/..//evil.example",
    "/.//evil.example",
    "/a/..//evil.example",
    "/%2e%2e//evil.example",
    "/%2E%2E/%2Fevil.example",
    "/.%2e//evil.example",
    "/%2e//evil.example",
    // Found by fuzzing: an encoded `#` or `?` ends the path only once decoded, while a browser
    // resolves the encoded dots before it.
    "/x%23/%2e%2e//evil.example",
    "/x%3F/%2E%2e//evil.example",
    "/x%23/.%2e//evil.example",
    "/x%253F/%252e%252e//evil.example",
    "/%2e'%23%%/%2e%2e//%e/./[//./[/./[//./",
    "https:/evil.example",
    "https:evil.example",
    " /",
    "\u{2028}/x",
];

/// Targets that must be kept (left) and what is returned (right).
pub(crate) const SAFE: &[(&str, &str)] = &[
    ("/", "/"),
    ("/app", "/app"),
    ("/app/", "/app/"),
    ("/app/x?y=1&z=2", "/app/x?y=1&z=2"),
    ("/app#section", "/app#section"),
    ("/a//b", "/a//b"),
    ("/a/../b", "/a/../b"),
    ("/search?q=http://example.com", "/search?q=http://example.com"),
    ("/path%20with%20spaces", "/path%20with%20spaces"),
    ("/with space", "/with%20space"),
    ("/caf\u{e9}", "/caf%C3%A9"),
    ("/a:b", "/a:b"),
    ("/%41", "/%41"),
    ("/%zz", "/%zz"),
    ("/x?next=//evil", "/x?next=//evil"),
];

#[test]
fn refuses_every_unsafe_target() {
    for raw in UNSAFE {
        assert_eq!(safe_return_to(raw), None, "{raw:?} was accepted");
    }
    assert_eq!(safe_return_to(&format!("/{}", "a".repeat(MAX_LEN))), None);
}

#[test]
fn a_target_too_long_once_encoded_is_refused() {
    // Found by fuzzing: the result, re-checked when the login form is submitted, must still
    // be accepted, so the limit applies after encoding too.
    let spaces = format!("/ /{}/f", " ".repeat(700));
    assert!(spaces.len() <= MAX_LEN);
    assert_eq!(safe_return_to(&spaces), None);
    let accented = format!("/{}", "\u{e9}".repeat(400));
    assert!(accented.len() <= MAX_LEN);
    assert_eq!(safe_return_to(&accented), None);
    let longest = format!("/{}", "\u{e9}".repeat((MAX_LEN - 1) / 6));
    let out = safe_return_to(&longest).expect("fits once encoded");
    assert!(out.len() <= MAX_LEN);
    assert_eq!(safe_return_to(&out), Some(out));
}

#[test]
fn keeps_safe_targets_and_encodes_unsafe_bytes() {
    for (raw, want) in SAFE {
        assert_eq!(safe_return_to(raw).as_deref(), Some(*want), "{raw:?}");
    }
}

#[test]
fn query_values_are_fully_encoded() {
    assert_eq!(encode_query_value("/a b?c=d&e"), "%2Fa%20b%3Fc%3Dd%26e");
    assert_eq!(encode_query_value("Az09-._~"), "Az09-._~");
}

fn fully_decoded(s: &str) -> Vec<u8> {
    let mut cur = s.as_bytes().to_vec();
    for _ in 0..8 {
        let next = percent_decode(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Strings built from the characters open redirects are made of.
fn hostile() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "/",
        "//",
        "\\",
        "%2F",
        "%2f",
        "%5C",
        "%25",
        "%252F",
        "%09",
        "%0A",
        "%0D",
        "%00",
        "\t",
        "\r",
        "\n",
        ":",
        "javascript:",
        "http:",
        "https://",
        "evil.example",
        ".",
        "..",
        "%2e",
        "?",
        "#",
        "@",
        "a",
        "%",
        "2",
        "F",
        " ",
        "\u{85}",
        "%C2%85",
        "\u{7f}",
    ]);
    prop::collection::vec(atoms, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn never_returns_a_target_that_leaves_the_origin(raw in hostile()) {
        if let Some(out) = safe_return_to(&raw) {
            for form in [out.as_bytes().to_vec(), fully_decoded(&out)] {
                prop_assert_eq!(form.first(), Some(&b'/'));
                prop_assert_ne!(form.get(1), Some(&b'/'));
                prop_assert!(!form.contains(&b'\\'), "backslash in {:?}", out);
                prop_assert!(!form.iter().any(|&c| c < 0x20 || c == 0x7f), "control in {:?}", out);
                let text = String::from_utf8_lossy(&form).into_owned();
                prop_assert!(!text.chars().any(char::is_control), "control in {:?}", out);
                let path_end = form.iter().position(|&c| c == b'?' || c == b'#').unwrap_or(form.len());
                prop_assert!(!resolves_to_double_slash(&form[..path_end]));
            }
            prop_assert!(axum::http::HeaderValue::from_str(&out).is_ok());
            // A path-only reference: no scheme, no authority.
            let uri: axum::http::Uri = out.split('#').next().unwrap_or("").parse().unwrap();
            prop_assert!(uri.scheme().is_none() && uri.authority().is_none());
        }
    }

    #[test]
    fn arbitrary_strings_never_yield_schemes_or_authorities(raw in ".{0,64}") {
        if let Some(out) = safe_return_to(&raw) {
            let decoded = fully_decoded(&out);
            prop_assert_eq!(decoded.first(), Some(&b'/'));
            prop_assert_ne!(decoded.get(1), Some(&b'/'));
            prop_assert!(!decoded.contains(&b'\\'));
        }
    }
}
