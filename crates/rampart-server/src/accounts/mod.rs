//! Accounts: email rules, password policy and hashing, creating users. Shared by the HTTP API and
//! the `rampart user` commands.

pub mod cli;

use rampart_core::SecretString;
use rampart_password::{AsyncHasher, PasswordPolicy};
use rampart_store_sql::{Db, NewUser, Role, StoreError, User};

use crate::error::ApiError;

/// Longest accepted email address.
pub const MAX_EMAIL_LEN: usize = 254;

/// Checks an email address: one `@`, non-empty local part and domain with a dot, at most 254
/// characters, no whitespace, control or invisible characters, and no part (the local part or a
/// domain label) that mixes Latin, Greek and Cyrillic letters.
///
/// # Security
/// Names are shown to admins, in the audit log and to upstream apps (`Remote-Email`). An
/// invisible character (`admin@x.test` plus a zero-width space) or a look-alike letter from
/// another script (a Cyrillic `а` in `аdmin@x.test`) would make an address that reads like
/// someone else's. A part written wholly in one of those scripts is accepted.
pub fn valid_email(email: &str) -> bool {
    if email.is_empty()
        || email.len() > MAX_EMAIL_LEN
        || email.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
    {
        return false;
    }
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !mixes_scripts(local)
                && !domain.split('.').any(mixes_scripts)
        }
        None => false,
    }
}

/// Characters that render as nothing: format characters (zero-width spaces and joiners,
/// direction marks and overrides, the byte-order mark, soft hyphen, tag characters) and
/// invisible fillers.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Whether `part` has letters of more than one of the scripts whose letters look alike.
fn mixes_scripts(part: &str) -> bool {
    #[derive(PartialEq, Clone, Copy)]
    enum Script {
        Latin,
        Greek,
        Cyrillic,
    }
    let script = |c: char| match c {
        'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => {
            Some(Script::Latin)
        }
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some(Script::Greek),
        '\u{0400}'..='\u{052F}'
        | '\u{1C80}'..='\u{1C8F}'
        | '\u{2DE0}'..='\u{2DFF}'
        | '\u{A640}'..='\u{A69F}' => Some(Script::Cyrillic),
        _ => None,
    };
    let mut seen = None;
    for s in part.chars().filter_map(script) {
        match seen {
            None => seen = Some(s),
            Some(first) if first != s => return true,
            Some(_) => {}
        }
    }
    false
}

/// A fresh opaque user id.
pub fn new_user_id() -> String {
    format!("u_{}", rampart_core::token::random_id(12))
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bad email.
    #[error("invalid email address")]
    InvalidEmail,
    /// Policy refused the password.
    #[error("{0}")]
    Policy(#[from] rampart_password::PolicyViolation),
    /// The email is taken.
    #[error("a user with this email already exists")]
    EmailTaken,
    /// Hashing failed or is saturated.
    #[error("password hashing failed")]
    Hash(#[source] rampart_password::PasswordError),
    /// Storage failed.
    #[error("storage failed")]
    Store(#[source] StoreError),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        use axum::http::StatusCode;
        match e {
            AccountError::InvalidEmail => {
                ApiError::invalid_request("email must be a valid email address")
            }
            AccountError::Policy(v) => {
                ApiError::new(StatusCode::BAD_REQUEST, "password_policy", v.to_string())
            }
            AccountError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                "email_taken",
                "a user with this email already exists",
            ),
            AccountError::Hash(rampart_password::PasswordError::Busy) => ApiError::unavailable(
                "busy",
                "too many password operations in progress; retry shortly",
            )
            .with_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            ),
            AccountError::Hash(e) => ApiError::internal_from("password hashing failed", &e),
            AccountError::Store(e) => crate::error::store_error(&e),
        }
    }
}

/// Validates and hashes a new password for `email`.
pub async fn hash_new_password(
    hasher: &AsyncHasher,
    policy: &PasswordPolicy,
    email: &str,
    password: &SecretString,
) -> Result<String, AccountError> {
    policy.check(password, email)?;
    hasher.hash(password.clone()).await.map_err(AccountError::Hash)
}

/// What creating a user needs.
#[derive(Debug)]
pub struct CreateUser<'a> {
    /// Email.
    pub email: &'a str,
    /// Password (policy-checked here).
    pub password: &'a SecretString,
    /// Role.
    pub role: Role,
    /// Whether this is first-user setup (atomic; `Ok(None)` when already done).
    pub first_user: bool,
}

/// Creates a user after checking email and password. `Ok(None)` only for first-user setup that
/// was already done.
pub async fn create_user(
    db: &Db,
    hasher: &AsyncHasher,
    policy: &PasswordPolicy,
    now: time::OffsetDateTime,
    req: CreateUser<'_>,
) -> Result<Option<User>, AccountError> {
    if !valid_email(req.email) {
        return Err(AccountError::InvalidEmail);
    }
    if req.first_user && !db.setup_needed().await.map_err(AccountError::Store)? {
        return Ok(None);
    }
    let hash = hash_new_password(hasher, policy, req.email, req.password).await?;
    let new = NewUser {
        id: new_user_id(),
        email: req.email.to_owned(),
        role: req.role,
        password_hash: hash,
    };
    let res = if req.first_user {
        db.setup_first_user(&new, now).await
    } else {
        db.create_user(&new, now).await.map(Some)
    };
    match res {
        Ok(u) => Ok(u),
        Err(StoreError::Conflict) => Err(AccountError::EmailTaken),
        Err(e) => Err(AccountError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        for ok in [
            "a@b.co",
            "jane.doe+x@example.com",
            "Ünïcode@例え.jp",
            "админ@пример.рф",
            "αλφα@example.gr",
        ] {
            assert!(valid_email(ok), "{ok}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@.co",
            "a@b.co.",
            "a b@c.de",
            "a@b@c.de",
            "a\0@b.co",
            long.as_str(),
            // Invisible characters.
            "admin@x.test\u{200B}",
            "ad\u{200D}min@x.test",
            "admin\u{FEFF}@x.test",
            "admin@x\u{00AD}.test",
            "\u{202E}nimda@x.test",
            // Look-alike letters mixed into one part.
            "\u{0430}dmin@x.test",
            "admin@ex\u{0430}mple.com",
            "p\u{03B1}ypal@x.test",
            // Mixed on purpose is refused too: a part is written in one of the three.
            "anna-\u{043C}\u{0430}\u{0440}\u{0438}\u{044F}@example.com",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }
}
