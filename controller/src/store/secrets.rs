//! Store for sealed secrets: hosts' X25519 public keys and secret versions, whose values
//! are kept only encrypted under the master key. `impl_secret_store!` writes the methods
//! once for both databases, like `impl_store!`.

use std::time::SystemTime;

/// One stored version of a secret; `value_enc` is ciphertext under the master key.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRecord {
    pub app: String,
    pub name: String,
    pub version: u64,
    pub value_enc: String,
    pub digest: String,
    pub set_by: String,
    pub set_at: SystemTime,
}

#[derive(sqlx::FromRow)]
pub(super) struct SecretRow {
    app: String,
    name: String,
    version: i64,
    value_enc: String,
    digest: String,
    set_by: String,
    set_at: i64,
}

impl From<SecretRow> for SecretRecord {
    fn from(r: SecretRow) -> Self {
        Self {
            app: r.app,
            name: r.name,
            version: r.version as u64,
            value_enc: r.value_enc,
            digest: r.digest,
            set_by: r.set_by,
            set_at: super::rows::from_ms(r.set_at),
        }
    }
}

pub(super) const SET_HOST_KEY: &str = "INSERT INTO host_secret_keys (host, public_key, \
     registered_at) VALUES ($1, $2, $3) ON CONFLICT (host) DO UPDATE SET \
     public_key = excluded.public_key, registered_at = excluded.registered_at";
pub(super) const HOST_KEY: &str = "SELECT public_key FROM host_secret_keys WHERE host = $1";
pub(super) const DELETE_HOST_KEY: &str = "DELETE FROM host_secret_keys WHERE host = $1";
pub(super) const INSERT_SECRET: &str = "INSERT INTO secrets (app, name, version, value_enc, \
     digest, set_by, set_at) SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6 \
     FROM secrets WHERE app = $1 AND name = $2 RETURNING version";
pub(super) const SECRET_COLS: &str = "app, name, version, value_enc, digest, set_by, set_at";
pub(super) const DELETE_SECRET: &str = "DELETE FROM secrets WHERE app = $1 AND name = $2";
pub(super) const REWRAP_SECRET: &str = "UPDATE secrets SET value_enc = $4 \
     WHERE app = $1 AND name = $2 AND version = $3";

/// Secret storage; every [`super::Store`] has it.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Records (or replaces) a host's public key.
    async fn set_host_secret_key(
        &self,
        host: &str,
        key: &str,
        now: SystemTime,
    ) -> super::Result<()>;
    async fn host_secret_key(&self, host: &str) -> super::Result<Option<String>>;
    /// Forgets a host's key: nothing issued after is sealed to it. True when one was there.
    async fn remove_host_secret_key(&self, host: &str) -> super::Result<bool>;
    /// Stores a new version of `app`/`name` and returns its version (1, 2, ...).
    async fn put_secret(
        &self,
        app: &str,
        name: &str,
        value_enc: &str,
        digest: &str,
        set_by: &str,
        now: SystemTime,
    ) -> super::Result<u64>;
    /// Every stored version of every secret of `app` (all apps when `None`), by name, version.
    async fn secret_versions(&self, app: Option<&str>) -> super::Result<Vec<SecretRecord>>;
    async fn secret(
        &self,
        app: &str,
        name: &str,
        version: u64,
    ) -> super::Result<Option<SecretRecord>>;
    /// Removes every version of `app`/`name`; returns how many.
    async fn remove_secret(&self, app: &str, name: &str) -> super::Result<u64>;
    /// Replaces one version's ciphertext (master key rotation).
    async fn rewrap_secret(
        &self,
        app: &str,
        name: &str,
        version: u64,
        value_enc: &str,
    ) -> super::Result<()>;
}

macro_rules! impl_secret_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SecretStore for $store {
            async fn set_host_secret_key(
                &self,
                host: &str,
                key: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<()> {
                use $crate::store::{rows, secrets};
                sqlx::query(secrets::SET_HOST_KEY)
                    .bind(host)
                    .bind(key)
                    .bind(rows::to_ms(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn host_secret_key(&self, host: &str) -> $crate::store::Result<Option<String>> {
                Ok(
                    sqlx::query_scalar::<_, String>($crate::store::secrets::HOST_KEY)
                        .bind(host)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn remove_host_secret_key(&self, host: &str) -> $crate::store::Result<bool> {
                let r = sqlx::query($crate::store::secrets::DELETE_HOST_KEY)
                    .bind(host)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn put_secret(
                &self,
                app: &str,
                name: &str,
                value_enc: &str,
                digest: &str,
                set_by: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<u64> {
                use $crate::store::{rows, secrets};
                let mut tx = self.begin_write().await?;
                Self::lock_app(&mut tx, app).await?;
                let v: i64 = sqlx::query_scalar(secrets::INSERT_SECRET)
                    .bind(app)
                    .bind(name)
                    .bind(value_enc)
                    .bind(digest)
                    .bind(set_by)
                    .bind(rows::to_ms(now))
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(v as u64)
            }

            async fn secret_versions(
                &self,
                app: Option<&str>,
            ) -> $crate::store::Result<Vec<$crate::store::SecretRecord>> {
                use $crate::store::secrets;
                let sql = format!(
                    "SELECT {} FROM secrets WHERE (CAST($1 AS TEXT) IS NULL OR app = $1) \
                     ORDER BY app, name, version",
                    secrets::SECRET_COLS
                );
                let rows = sqlx::query_as::<_, secrets::SecretRow>(&sql)
                    .bind(app)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn secret(
                &self,
                app: &str,
                name: &str,
                version: u64,
            ) -> $crate::store::Result<Option<$crate::store::SecretRecord>> {
                use $crate::store::secrets;
                let sql = format!(
                    "SELECT {} FROM secrets WHERE app = $1 AND name = $2 AND version = $3",
                    secrets::SECRET_COLS
                );
                let row = sqlx::query_as::<_, secrets::SecretRow>(&sql)
                    .bind(app)
                    .bind(name)
                    .bind(version as i64)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn remove_secret(&self, app: &str, name: &str) -> $crate::store::Result<u64> {
                let r = sqlx::query($crate::store::secrets::DELETE_SECRET)
                    .bind(app)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn rewrap_secret(
                &self,
                app: &str,
                name: &str,
                version: u64,
                value_enc: &str,
            ) -> $crate::store::Result<()> {
                sqlx::query($crate::store::secrets::REWRAP_SECRET)
                    .bind(app)
                    .bind(name)
                    .bind(version as i64)
                    .bind(value_enc)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
