//! Constant-time comparison.

use subtle::ConstantTimeEq;

/// Compares two byte strings in time independent of where they differ.
/// Lengths are not secret: different lengths return `false` at once.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_exactly() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"abcd"));
    }
}
