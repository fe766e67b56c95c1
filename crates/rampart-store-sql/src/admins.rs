//! Changes that must leave at least one active admin: demoting, disabling and deleting a user.
//!
//! # Security
//! The "last active admin" check and the change run in one transaction that serializes against
//! every other such transaction, so two admins removing each other at the same moment cannot
//! both succeed:
//! - Postgres: the transaction first locks the row of every active admin (`FOR UPDATE`, in id
//!   order so two of them never deadlock) and counts the rows it locked. A second transaction
//!   waits for the first to commit, then re-reads those rows and counts what is left.
//! - SQLite: the transaction starts with `BEGIN IMMEDIATE`, which takes the single writer lock
//!   before anything is read.
//!
//! Plain [`Db::update_user`] and [`Db::delete_user`] make no such check.

use sqlx::{Any, Transaction};
use time::OffsetDateTime;

use crate::db::get_i64;
use crate::users::{row_to_user, update_role_disabled, Role, User, USER_COLUMNS};
use crate::{Backend, Db, Result, StoreError};

/// The outcome of a change that must leave an active admin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum KeepAdmin<T> {
    /// The change was made.
    Done(T),
    /// No such user; nothing changed.
    NotFound,
    /// The user is the last active admin and the change would remove them; nothing changed.
    LastAdmin,
}

/// A user before and after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// As it was when the transaction read it.
    pub before: User,
    /// As it was committed.
    pub after: User,
}

impl Db {
    /// Changes role and/or disabled flag, unless that would leave no active admin.
    pub async fn update_user_keeping_admin(
        &self,
        id: &str,
        role: Option<Role>,
        disabled: Option<bool>,
        now: OffsetDateTime,
    ) -> Result<KeepAdmin<UserChange>> {
        let (mut tx, admins) = self.begin_admin_change().await?;
        let Some(before) = self.user_in(&mut tx, id).await? else {
            tx.rollback().await.map_err(StoreError::from_sqlx)?;
            return Ok(KeepAdmin::NotFound);
        };
        let removes = role == Some(Role::User) || disabled == Some(true);
        if removes && is_active_admin(&before) && admins <= 1 {
            tx.rollback().await.map_err(StoreError::from_sqlx)?;
            return Ok(KeepAdmin::LastAdmin);
        }
        update_role_disabled(id, role, disabled, now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let after = self.user_in(&mut tx, id).await?.ok_or(StoreError::Corrupt("user vanished"))?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(KeepAdmin::Done(UserChange { before, after }))
    }

    /// Deletes a user, unless they are the last active admin. Returns the deleted user.
    pub async fn delete_user_keeping_admin(&self, id: &str) -> Result<KeepAdmin<User>> {
        let (mut tx, admins) = self.begin_admin_change().await?;
        let Some(before) = self.user_in(&mut tx, id).await? else {
            tx.rollback().await.map_err(StoreError::from_sqlx)?;
            return Ok(KeepAdmin::NotFound);
        };
        if is_active_admin(&before) && admins <= 1 {
            tx.rollback().await.map_err(StoreError::from_sqlx)?;
            return Ok(KeepAdmin::LastAdmin);
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(KeepAdmin::Done(before))
    }

    /// Opens a transaction that excludes every other admin change until it ends, and counts the
    /// active admins inside it.
    async fn begin_admin_change(&self) -> Result<(Transaction<'static, Any>, i64)> {
        match self.backend() {
            Backend::Sqlite => {
                let mut tx = self
                    .pool()
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(StoreError::from_sqlx)?;
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM users WHERE role = 'admin' AND disabled = 0",
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                let n = get_i64(&row, "n")?;
                Ok((tx, n))
            }
            Backend::Postgres => {
                let mut tx = self.pool().begin().await.map_err(StoreError::from_sqlx)?;
                let rows = sqlx::query(
                    "SELECT id FROM users WHERE role = 'admin' AND disabled = 0 \
                     ORDER BY id FOR UPDATE",
                )
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
                Ok((tx, n))
            }
        }
    }

    /// Reads a user inside an admin change (locking the row on Postgres).
    async fn user_in(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<Option<User>> {
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1{lock}");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(|r| row_to_user(r).map(|u| u.user)).transpose()
    }
}

fn is_active_admin(user: &User) -> bool {
    user.role == Role::Admin && !user.disabled
}
