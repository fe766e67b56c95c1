//! Small helpers shared by the layers: path prefixes and media types.

use http::header::{HeaderMap, CONTENT_TYPE};

/// Whether `path` is `prefix` or lies below it at a segment boundary: `/api/auth` matches
/// `/api/auth` and `/api/auth/login` but not `/api/authz`. A prefix ending in `/` matches
/// everything below it.
pub(crate) fn under_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

/// Whether `path` lies under any of `prefixes` (see [`under_prefix`]).
pub(crate) fn under_any(path: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| under_prefix(path, p))
}

/// The `Content-Type` essence (before any parameter), trimmed, when the header is text.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').next().map(str::trim)
}

/// Whether the `Content-Type` essence (before any parameter) is `essence`, ignoring ASCII case.
pub(crate) fn has_media_type(headers: &HeaderMap, essence: &str) -> bool {
    media_type(headers).is_some_and(|e| e.eq_ignore_ascii_case(essence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let mut h = HeaderMap::new();
        assert!(!has_media_type(&h, "text/html"));
        h.insert(CONTENT_TYPE, "Text/HTML ; charset=utf-8".parse().unwrap());
        assert!(has_media_type(&h, "text/html"));
        assert!(!has_media_type(&h, "text/htm"));
        assert!(!has_media_type(&h, "application/json"));
    }

    #[test]
    fn matches_whole_segments_only() {
        assert!(under_prefix("/api/auth", "/api/auth"));
        assert!(under_prefix("/api/auth/login", "/api/auth"));
        assert!(!under_prefix("/api/authz", "/api/auth"));
        assert!(under_prefix("/hooks/x", "/hooks/"));
        assert!(!under_prefix("/hooks", "/hooks/"));
        assert!(!under_prefix("/anything", ""));
    }
}
