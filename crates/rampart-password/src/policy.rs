//! Password policy: length limits, a common-password list and the account's email.
//!
//! # Security
//! - Length counts Unicode scalar values, so non-Latin passwords are not penalised. The maximum
//!   (256) is checked first, before any work proportional to the input, to bound the cost of
//!   hostile input; the minimum can be configured but never below 8.
//! - There are no composition rules (digits, symbols, mixed case): they push users towards
//!   predictable patterns without adding strength. Instead a password is refused when it is one
//!   of the 30,000 most common passwords (compared case-insensitively), when it is built in a
//!   way guessers try first ([`PolicyViolation::Predictable`]: one unit repeated, a run along
//!   the alphabet, the digits or a keyboard row, or a common password dressed up with leading or
//!   trailing digits and symbols or with look-alike characters), or when it contains the local
//!   part of the account's email. Most entries of the list are shorter than the default minimum
//!   of 12, so the constructions are what stops the long passwords guessers start with
//!   (`passwordpassword`, `123456789012`, `Password1234!`).
//! - A [`PolicyViolation`] never carries the password; its message is safe to show the user.

use std::collections::HashSet;
use std::sync::OnceLock;

use rampart_core::SecretString;

/// The lowest minimum length a policy accepts.
pub const MIN_LEN_FLOOR: usize = 8;
/// The default minimum length.
pub const DEFAULT_MIN_LEN: usize = 12;
/// The maximum length, in Unicode scalar values.
pub const MAX_LEN: usize = 256;
/// The shortest email local part that is searched for in the password.
const MIN_LOCAL_PART_LEN: usize = 3;

/// The bundled list: one lowercase password per line, most common first.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// A rule the password breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Fewer characters than the minimum.
    #[error("password is too short: use at least {min} characters")]
    TooShort {
        /// The minimum length in characters.
        min: usize,
    },
    /// More characters than the maximum.
    #[error("password is too long: use at most {max} characters")]
    TooLong {
        /// The maximum length in characters.
        max: usize,
    },
    /// One of the most commonly used passwords.
    #[error("password is too common: it is on a list of frequently used passwords")]
    Common,
    /// Built in a way guessers try first: a repetition, a run along the alphabet, the digits
    /// or a keyboard row, or a common password with digits and symbols around it or look-alike
    /// characters in it.
    #[error(
        "password is too predictable: it repeats itself, runs along the keyboard or alphabet, \
         or dresses up a frequently used password"
    )]
    Predictable,
    /// Contains the local part of the account's email address.
    #[error("password must not contain your email address or its name part")]
    ContainsEmail,
}

impl PolicyViolation {
    /// A stable snake_case code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "password_too_short",
            Self::TooLong { .. } => "password_too_long",
            Self::Common => "password_too_common",
            Self::Predictable => "password_too_predictable",
            Self::ContainsEmail => "password_contains_email",
        }
    }
}

/// Rules a new password must meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_len: usize,
    max_len: usize,
}

impl PasswordPolicy {
    /// A policy with the given minimum length, clamped to `8..=256`.
    pub fn new(min_len: usize) -> Self {
        Self { min_len: min_len.clamp(MIN_LEN_FLOOR, MAX_LEN), max_len: MAX_LEN }
    }

    /// The minimum length in characters.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// The maximum length in characters.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks a new password for the account with `email`. Rules are checked in order: too long,
    /// too short, common, predictable, contains the email's local part; the first broken one is
    /// returned.
    pub fn check(&self, password: &SecretString, email: &str) -> Result<(), PolicyViolation> {
        let text = password.expose_secret();
        // A scalar value is at most 4 bytes: anything longer is too long without counting.
        if text.len() > self.max_len.saturating_mul(4) {
            return Err(PolicyViolation::TooLong { max: self.max_len });
        }
        let len = text.chars().count();
        if len > self.max_len {
            return Err(PolicyViolation::TooLong { max: self.max_len });
        }
        if len < self.min_len {
            return Err(PolicyViolation::TooShort { min: self.min_len });
        }
        let lowered = SecretString::new(text.to_lowercase());
        if is_common(lowered.expose_secret()) {
            return Err(PolicyViolation::Common);
        }
        if is_predictable(lowered.expose_secret()) {
            return Err(PolicyViolation::Predictable);
        }
        let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
        if local.chars().count() >= MIN_LOCAL_PART_LEN
            && lowered.expose_secret().contains(&local.to_lowercase())
        {
            return Err(PolicyViolation::ContainsEmail);
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    /// Minimum 12, maximum 256 characters.
    fn default() -> Self {
        Self::new(DEFAULT_MIN_LEN)
    }
}

/// The bundled common passwords, parsed once.
fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS.lines().map(str::trim).filter(|line| !line.is_empty()).collect()
    })
}

/// Whether an already lowercased password is on the bundled list.
fn is_common(lowercased: &str) -> bool {
    common_passwords().contains(lowercased)
}

/// Sequences people type or count along: the alphabet, the digits, keyboard rows (each, and
/// all three in a row) and the keyboard's columns.
const RUNS: [&str; 7] = [
    "abcdefghijklmnopqrstuvwxyz",
    "1234567890",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
];

/// The shortest core (the password less leading and trailing digits and symbols) that is
/// looked up on the common list: shorter ones are words of every passphrase.
const MIN_CORE_LEN: usize = 4;

/// Whether an already lowercased password is built the way guessers try first: see
/// [`PolicyViolation::Predictable`].
fn is_predictable(lowercased: &str) -> bool {
    let chars: Vec<char> = lowercased.chars().collect();
    if is_repetition(&chars) || is_run(&chars) {
        return true;
    }
    let core = lowercased
        .trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c == ' ');
    let core_chars: Vec<char> = core.chars().collect();
    if core_chars.len() < MIN_CORE_LEN {
        return false;
    }
    let plain = undo_look_alikes(core);
    is_common(core)
        || is_common(&plain)
        || is_common(&undo_look_alikes(lowercased))
        || is_repetition(&core_chars)
        || is_run(&core_chars)
}

/// The whole is one unit written twice or more (`aaaaaaaaaaaa`, `passwordpassword`).
fn is_repetition(chars: &[char]) -> bool {
    let n = chars.len();
    (1..=n / 2).any(|unit| n % unit == 0 && chars.chunks(unit).all(|c| c == &chars[..unit]))
}

/// The whole runs along one of [`RUNS`], forwards or backwards, wrapping around
/// (`abcdefghijkl`, `123456789012`, `poiuytrewq`).
fn is_run(chars: &[char]) -> bool {
    if chars.len() < 3 {
        return false;
    }
    let forward: String = chars.iter().collect();
    let backward: String = chars.iter().rev().collect();
    RUNS.iter().any(|run| {
        let cycled = run.repeat(chars.len() / run.len() + 2);
        cycled.contains(&forward) || cycled.contains(&backward)
    })
}

/// Look-alike characters read as the letters they stand for (`p@ssw0rd` → `password`).
fn undo_look_alikes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '3' => 'e',
            '1' | '!' => 'i',
            '0' => 'o',
            '$' | '5' => 's',
            '7' => 't',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_passwords_built_the_way_guessers_try_first() {
        let policy = PasswordPolicy::default();
        for pw in [
            // Repetitions.
            "aaaaaaaaaaaa",
            "passwordpassword",
            "abcabcabcabc",
            "Xk9#mQ2$Xk9#mQ2$",
            // Runs along the alphabet, the digits and the keyboard, either way, wrapping.
            "abcdefghijkl",
            "123456789012345",
            "098765432109",
            "qwertyuiopasdf",
            "LKJHGFDSAPOIUYTR",
            "4rfv5tgb6yhn7ujm",
            "xyzabcdefghij",
            // A common password with digits and symbols around it, or look-alikes in it.
            "Password1234!",
            "!!Sunshine2024!!",
            "p@ssw0rd123456",
            "Dragon_____1999",
            "2024monkey2024",
            "P4SSW0RD!!!!",
            // A run or repetition inside the dressing.
            "qwerty123456!!",
            "#abcdabcdabcd#",
        ] {
            assert_eq!(
                check(&policy, pw, "ann@example.com"),
                Err(PolicyViolation::Predictable),
                "{pw}"
            );
        }
    }

    #[test]
    fn accepts_long_passwords_that_are_not_built_that_way() {
        let policy = PasswordPolicy::default();
        for pw in [
            "correct horse battery staple",
            "correct horse battery staple 42",
            "Tr0ub4dor&3-xylophone",
            "blue-lantern-river-42",
            "Xk9#mQ2$vL7@",
            "839201746352",
            "zebra crossing at noon",
            "my cat eats 3 carrots a day",
        ] {
            assert_eq!(check(&policy, pw, "ann@example.com"), Ok(()), "{pw}");
        }
    }

    #[test]
    fn the_predictable_violation_has_its_own_code_and_never_shows_the_password() {
        let v = check(&PasswordPolicy::default(), "Password1234!", "a@b.co").unwrap_err();
        assert_eq!(v.code(), "password_too_predictable");
        assert!(!v.to_string().contains("Password1234"), "{v}");
    }

    fn check(policy: &PasswordPolicy, pw: &str, email: &str) -> Result<(), PolicyViolation> {
        policy.check(&SecretString::new(pw), email)
    }

    #[test]
    fn bundled_list_has_at_least_ten_thousand_lowercase_entries() {
        let set = common_passwords();
        assert!(set.len() >= 10_000, "{}", set.len());
        assert!(set.iter().all(|p| p.to_lowercase() == *p));
        assert!(set.contains("password1234"));
    }

    #[test]
    fn default_policy_is_twelve_to_256() {
        let p = PasswordPolicy::default();
        assert_eq!((p.min_len(), p.max_len()), (12, 256));
    }

    #[test]
    fn minimum_is_clamped_to_at_least_eight() {
        assert_eq!(PasswordPolicy::new(0).min_len(), 8);
        assert_eq!(PasswordPolicy::new(7).min_len(), 8);
        assert_eq!(PasswordPolicy::new(10).min_len(), 10);
        assert_eq!(PasswordPolicy::new(10_000).min_len(), 256);
        assert_eq!(
            check(&PasswordPolicy::new(1), "abcdefg", "x@example.com"),
            Err(PolicyViolation::TooShort { min: 8 })
        );
    }

    #[test]
    fn rejects_short_password_naming_the_minimum() {
        let err = check(&PasswordPolicy::default(), "tangerine77", "x@example.com").unwrap_err();
        assert_eq!(err, PolicyViolation::TooShort { min: 12 });
        assert!(err.to_string().contains("12"), "{err}");
        assert_eq!(err.code(), "password_too_short");
    }

    #[test]
    fn rejects_long_password_before_other_rules() {
        // Too long and also containing the email: length wins.
        let long = format!("alice{}", "z".repeat(MAX_LEN));
        let err = check(&PasswordPolicy::default(), &long, "alice@example.com").unwrap_err();
        assert_eq!(err, PolicyViolation::TooLong { max: 256 });
        assert!(err.to_string().contains("256"), "{err}");
        let huge = "x".repeat(1 << 20);
        assert_eq!(
            check(&PasswordPolicy::default(), &huge, "a@b.c"),
            Err(PolicyViolation::TooLong { max: 256 })
        );
    }

    #[test]
    fn length_counts_unicode_scalar_values() {
        let policy = PasswordPolicy::default();
        // 12 characters, 36 bytes.
        let cjk = "鍵盤の上を猫が歩いて行った".chars().take(12).collect::<String>();
        assert_eq!(cjk.chars().count(), 12);
        assert_eq!(check(&policy, &cjk, "x@example.com"), Ok(()));
        // 256 four-byte characters are allowed, 257 are not (all different: a repetition
        // would be refused as predictable).
        let four_byte =
            |n: u32| (0x1F400..0x1F400 + n).filter_map(char::from_u32).collect::<String>();
        let max = four_byte(256);
        assert_eq!(max.len(), 1024);
        assert_eq!(check(&policy, &max, "x@example.com"), Ok(()));
        let over = four_byte(257);
        assert_eq!(
            check(&policy, &over, "x@example.com"),
            Err(PolicyViolation::TooLong { max: 256 })
        );
    }

    #[test]
    fn rejects_common_passwords_in_any_case() {
        let policy = PasswordPolicy::default();
        for pw in ["password1234", "PassWord1234", "qwertyuiop12"] {
            let err = check(&policy, pw, "x@example.com").unwrap_err();
            assert_eq!(err, PolicyViolation::Common, "{pw}");
        }
        assert!(PolicyViolation::Common.to_string().contains("common"));
    }

    #[test]
    fn rejects_password_containing_email_local_part() {
        let policy = PasswordPolicy::default();
        let err = check(&policy, "my-name-is-ALICE-ok", "Alice@example.com").unwrap_err();
        assert_eq!(err, PolicyViolation::ContainsEmail);
        assert!(err.to_string().contains("email"), "{err}");
        // The domain is not the local part.
        assert_eq!(check(&policy, "example-rocket-fuel", "alice@example.com"), Ok(()));
    }

    #[test]
    fn short_email_local_part_is_not_checked() {
        let policy = PasswordPolicy::default();
        assert_eq!(check(&policy, "ab-lantern-harbour", "ab@example.com"), Ok(()));
        assert_eq!(
            check(&policy, "abc-lantern-harbour", "abc@example.com"),
            Err(PolicyViolation::ContainsEmail)
        );
    }

    #[test]
    fn accepts_a_long_uncommon_password_without_composition_rules() {
        let policy = PasswordPolicy::default();
        assert_eq!(check(&policy, "lantern harbour velvet", "alice@example.com"), Ok(()));
    }

    #[test]
    fn violation_output_never_contains_the_password() {
        let policy = PasswordPolicy::default();
        for pw in ["hunter2", "password1234", "xx-alice-hunter2-xx"] {
            let err = check(&policy, pw, "alice@example.com").unwrap_err();
            let shown = format!("{err:?} {err} {policy:?}");
            assert!(!shown.contains("hunter2") && !shown.contains("password1234"), "{shown}");
        }
    }
}
