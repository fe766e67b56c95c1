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

/// The media type of the `Content-Type` header (the part before any `;`), trimmed and
/// lowercased; `None` when absent or not text.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let mut h = HeaderMap::new();
        assert_eq!(media_type(&h), None);
        h.insert(CONTENT_TYPE, "Text/HTML ; charset=utf-8".parse().unwrap());
        assert_eq!(media_type(&h).as_deref(), Some("text/html"));
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
