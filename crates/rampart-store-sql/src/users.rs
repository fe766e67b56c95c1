//! Accounts: create, find, list, update, delete, and the atomic first-user setup.
//!
//! # Security
//! - Emails are unique case-insensitively (a lowercased copy carries the unique index).
//! - First-user setup is decided by inserting the single row of `setup_state` in the same
//!   transaction as the user: concurrent attempts on any number of instances sharing the
//!   database produce exactly one admin. Creating any user by other means also marks setup done,
//!   so deleting every account never reopens setup.

use serde::Serialize;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::db::{get_i64, get_string};
use crate::{from_micros, to_micros, Db, Result, StoreError};

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May use the admin API.
    Admin,
    /// Ordinary user.
    User,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// Parses `admin` or `user`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Opaque id.
    pub id: String,
    /// Email as entered.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A user with the stored password hash (never serialized to clients).
#[derive(Clone)]
pub struct UserWithHash {
    /// The user.
    pub user: User,
    /// PHC string, bcrypt hash or legacy hex digest.
    pub password_hash: String,
}

impl std::fmt::Debug for UserWithHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWithHash").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A user to create.
#[derive(Clone)]
pub struct NewUser {
    /// Opaque id chosen by the caller.
    pub id: String,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Password hash.
    pub password_hash: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

pub(crate) const USER_COLUMNS: &str = "id, email, role, disabled, password_hash, created_at";

pub(crate) fn row_to_user(row: &AnyRow) -> Result<UserWithHash> {
    let role = get_string(row, "role")?;
    Ok(UserWithHash {
        user: User {
            id: get_string(row, "id")?,
            email: get_string(row, "email")?,
            role: Role::parse(&role).ok_or(StoreError::Corrupt("unknown role"))?,
            disabled: get_i64(row, "disabled")? != 0,
            created_at: from_micros(get_i64(row, "created_at")?)?,
        },
        password_hash: get_string(row, "password_hash")?,
    })
}

impl Db {
    /// Whether first-user setup is still open.
    pub async fn setup_needed(&self) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM setup_state")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(get_i64(&row, "n")? == 0)
    }

    /// Creates the first user, atomically: `Ok(None)` when setup was already done.
    pub async fn setup_first_user(
        &self,
        new: &NewUser,
        now: OffsetDateTime,
    ) -> Result<Option<User>> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from_sqlx)?;
        let claimed = sqlx::query(
            "INSERT INTO setup_state (id, done_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        if claimed.rows_affected() != 1 {
            tx.rollback().await.map_err(StoreError::from_sqlx)?;
            return Ok(None);
        }
        insert_user(&mut tx, new, now).await?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(self.user_by_id(&new.id).await?.map(|u| u.user))
    }

    /// Creates a user; [`StoreError::Conflict`] if the email is taken. Marks setup done.
    pub async fn create_user(&self, new: &NewUser, now: OffsetDateTime) -> Result<User> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from_sqlx)?;
        sqlx::query(
            "INSERT INTO setup_state (id, done_at) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        insert_user(&mut tx, new, now).await?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        self.user_by_id(&new.id).await?.map(|u| u.user).ok_or(StoreError::Corrupt("user vanished"))
    }

    /// Finds a user by email, case-insensitively.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserWithHash>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email_lower = $1");
        let row = sqlx::query(&sql)
            .bind(email.to_lowercase())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(row_to_user).transpose()
    }

    /// Finds a user by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserWithHash>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(row_to_user).transpose()
    }

    /// Lists users, oldest first.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await.map_err(StoreError::from_sqlx)?;
        rows.iter().map(|r| row_to_user(r).map(|u| u.user)).collect()
    }

    /// Counts enabled admins.
    pub async fn count_active_admins(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0")
                .fetch_one(self.pool())
                .await
                .map_err(StoreError::from_sqlx)?;
        get_i64(&row, "n")
    }

    /// Changes role and/or disabled flag. `Ok(None)` if no such user.
    pub async fn update_user(
        &self,
        id: &str,
        role: Option<Role>,
        disabled: Option<bool>,
        now: OffsetDateTime,
    ) -> Result<Option<User>> {
        let res = update_role_disabled(id, role, disabled, now)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        if res.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(self.user_by_id(id).await?.map(|u| u.user))
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(
        &self,
        id: &str,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let res = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(to_micros(now))
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }

    /// Deletes a user. `false` if there was none.
    pub async fn delete_user(&self, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(res.rows_affected() == 1)
    }
}

async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewUser,
    now: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO users (id, email, email_lower, role, disabled, password_hash, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $6)",
    )
    .bind(&new.id)
    .bind(&new.email)
    .bind(new.email.to_lowercase())
    .bind(new.role.as_str())
    .bind(&new.password_hash)
    .bind(to_micros(now))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// The statement that sets `role` and/or `disabled` (each left as it is when `None`) of user
/// `id`, for [`Db::update_user`] and [`Db::update_user_keeping_admin`].
pub(crate) fn update_role_disabled(
    id: &str,
    role: Option<Role>,
    disabled: Option<bool>,
    now: OffsetDateTime,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "UPDATE users SET role = COALESCE($1, role), disabled = COALESCE($2, disabled), \
         updated_at = $3 WHERE id = $4",
    )
    .bind(role.map(|r| r.as_str().to_owned()))
    .bind(disabled.map(i64::from))
    .bind(to_micros(now))
    .bind(id)
}
