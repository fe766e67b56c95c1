//! A byte scan of a JSON text before it is parsed: nesting depth and `\u0000` escapes.

/// What the scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// A `\u0000` escape inside a string.
    NulEscape,
    /// More than the allowed number of nested arrays and objects.
    TooDeep,
}

/// Walks `bytes` once, tracking strings and escapes so that brackets and backslashes inside
/// strings are not miscounted. Structure errors are left to the parser.
pub(crate) fn scan(bytes: &[u8], max_depth: usize) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            match b {
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                        return Err(ScanError::NulEscape);
                    }
                    // Skip the escaped character, so `\"` does not end the string.
                    i += 1;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(ScanError::TooDeep);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_depth_outside_strings_only() {
        assert_eq!(scan(b"[[[]]]", 3), Ok(()));
        assert_eq!(scan(b"[[[[]]]]", 3), Err(ScanError::TooDeep));
        assert_eq!(scan(br#"{"a":{"b":[1]}}"#, 3), Ok(()));
        assert_eq!(scan(br#"{"a":"[[[[[[[["}"#, 2), Ok(()));
        assert_eq!(scan(br#"["\"[[[[["]"#, 1), Ok(()));
        assert_eq!(scan(b"[][][][]", 1), Ok(()));
    }

    #[test]
    fn finds_nul_escapes_but_not_escaped_backslashes() {
        assert_eq!(scan(br#"{"a":"x\u0000"}"#, 8), Err(ScanError::NulEscape));
        assert_eq!(scan(br#"{"a\u0000":1}"#, 8), Err(ScanError::NulEscape));
        assert_eq!(scan(br#"{"a":"\\u0000"}"#, 8), Ok(()));
        assert_eq!(scan(br#"{"a":"\u0001"}"#, 8), Ok(()));
        assert_eq!(scan(br#"\u0000"#, 8), Ok(()), "outside strings the parser refuses it");
    }
}
