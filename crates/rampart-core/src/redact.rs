//! Helpers that keep personal data and secrets out of operational logs.

/// Masks an email for logs: `jane@example.com` → `j***@example.com`.
/// Text without `@` is masked entirely.
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Truncates a string to at most `max` characters (on a character boundary).
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails() {
        assert_eq!(mask_email("jane@example.com"), "j***@example.com");
        assert_eq!(mask_email("@x.org"), "***@x.org");
        assert_eq!(mask_email("nonsense"), "***");
        assert_eq!(truncate("héllo", 2), "hé");
    }
}
