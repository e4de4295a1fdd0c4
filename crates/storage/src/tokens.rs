use chrono::{DateTime, Utc};
use sqlx::Connection as _;
use ubiops_domain::token::TokenHash;
use uuid::Uuid;

use crate::{Result, Store};

/// A token as the server sees it: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: Uuid,
    pub email: String,
    /// `None`: every project; otherwise only these project names.
    pub project_scope: Option<Vec<String>>,
}

/// A token as `ubiops-server token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListing {
    pub id: Uuid,
    pub email: String,
    pub project_scope: Option<Vec<String>>,
    /// Put in place by `UBIOPS_BOOTSTRAP_TOKEN`.
    pub bootstrap: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What [`Store::ensure_bootstrap_token`] did.
#[derive(Debug, Clone)]
pub struct BootstrapOutcome {
    pub token: TokenRecord,
    /// Tokens of earlier bootstrap values, revoked now.
    pub revoked: Vec<Uuid>,
}

/// `query_as!` into `$row` (`TokenRecord` or `TokenListing`) with its select
/// list, written once here, between the SQL `$before` and `$after`.
macro_rules! query_tokens {
    (TokenRecord, $before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(TokenRecord, $before + "id, email, project_scope" + $after $(, $arg)*)
    };
    (TokenListing, $before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            TokenListing,
            $before + "id, email, project_scope, bootstrap, created_at, revoked_at" + $after
            $(, $arg)*
        )
    };
}

impl Store {
    pub async fn insert_token(
        &self,
        hash: &TokenHash,
        email: &str,
        project_scope: Option<&[String]>,
    ) -> Result<TokenRecord> {
        let record = query_tokens!(
            TokenRecord,
            "INSERT INTO api_tokens (id, token_hash, email, project_scope) VALUES ($1, $2, $3, $4)
             RETURNING ",
            "",
            Uuid::new_v4(),
            hash.as_slice(),
            email,
            project_scope,
        )
        .fetch_one(&mut *self.connection().await?)
        .await?;
        Ok(record)
    }

    /// Makes sure a token with this hash exists as the all-projects admin
    /// token for `email` (the bootstrap token from the environment), and
    /// revokes any other token an earlier bootstrap value put in place: a
    /// rotated `UBIOPS_BOOTSTRAP_TOKEN` must not leave the old value valid.
    /// Idempotent, and safe when several servers start at once (the advisory
    /// lock orders them; the last value to start wins).
    pub async fn ensure_bootstrap_token(
        &self,
        hash: &TokenHash,
        email: &str,
    ) -> Result<BootstrapOutcome> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('ubiops.bootstrap_token'))")
            .execute(&mut *tx)
            .await?;
        let revoked = sqlx::query_scalar!(
            "UPDATE api_tokens SET revoked_at = now()
             WHERE bootstrap AND revoked_at IS NULL AND token_hash <> $1
             RETURNING id",
            hash.as_slice(),
        )
        .fetch_all(&mut *tx)
        .await?;
        let token = query_tokens!(
            TokenRecord,
            "INSERT INTO api_tokens (id, token_hash, email, project_scope, bootstrap)
             VALUES ($1, $2, $3, NULL, true)
             ON CONFLICT (token_hash)
             DO UPDATE SET email = EXCLUDED.email, project_scope = NULL, revoked_at = NULL,
                           bootstrap = true
             RETURNING ",
            "",
            Uuid::new_v4(),
            hash.as_slice(),
            email,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(BootstrapOutcome { token, revoked })
    }

    /// The live (not revoked) token with this hash, if any.
    ///
    /// The index lookup compares hashes, not secrets, and is not constant
    /// time; that is safe: timing can at most reveal how much of a stored
    /// SHA-256 an attacker's guess shares, and the caller hashed the guess,
    /// so steering that prefix needs SHA-256 preimages. The secret itself is
    /// never compared anywhere, so no comparison of it can leak.
    pub async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        let record = query_tokens!(
            TokenRecord,
            "SELECT ",
            " FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            hash.as_slice(),
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        Ok(record)
    }

    pub async fn revoke_token(&self, id: Uuid) -> Result<()> {
        sqlx::query!("UPDATE api_tokens SET revoked_at = now() WHERE id = $1", id)
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }

    /// Every token, live or revoked, oldest first: what an operator needs to
    /// tell them apart. Never the secret, which is not stored.
    pub async fn list_tokens(&self) -> Result<Vec<TokenListing>> {
        let tokens = query_tokens!(
            TokenListing,
            "SELECT ",
            " FROM api_tokens ORDER BY created_at, id",
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(tokens)
    }

    /// Revokes the live token with this id; `None` when there is no such live
    /// token (unknown, or revoked already).
    pub async fn revoke_token_by_id(&self, id: Uuid) -> Result<Option<TokenListing>> {
        let token = query_tokens!(
            TokenListing,
            "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
             RETURNING ",
            "",
            id,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        Ok(token)
    }

    /// Revokes every live token of this email; returns those it revoked.
    pub async fn revoke_tokens_by_email(&self, email: &str) -> Result<Vec<TokenListing>> {
        let tokens = query_tokens!(
            TokenListing,
            "UPDATE api_tokens SET revoked_at = now() WHERE email = $1 AND revoked_at IS NULL
             RETURNING ",
            "",
            email,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(tokens)
    }
}

impl Store {
    /// On a first start there is no token at all: store this one as the admin
    /// token. Returns false (and stores nothing) when any token exists. The
    /// advisory lock makes two servers starting together create only one.
    pub async fn insert_first_admin_token(&self, hash: &TokenHash, email: &str) -> Result<bool> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('ubiops.first_admin_token'))")
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query!(
            "INSERT INTO api_tokens (id, token_hash, email, project_scope)
             SELECT $1, $2, $3, NULL WHERE NOT EXISTS (SELECT 1 FROM api_tokens)",
            Uuid::new_v4(),
            hash.as_slice(),
            email,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }
}
