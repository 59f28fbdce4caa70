//! The shared [`Store`](crate::store::Store) methods for API tokens, join tokens and joining.

/// Bearer tokens, join tokens, and a host joining with one.
/// Added to `$methods`, then handed on to `$next` (see `impl_store!`).
macro_rules! token_methods {
    ($store:ty { $($methods:tt)* } $next:ident $($rest:ident)*) => {
        $crate::store::methods::$next! { $store { $($methods)*

            async fn create_token(
                &self,
                t: &$crate::store::TokenRecord,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows, StoreError};
                let r = sqlx::query(queries::INSERT_TOKEN)
                    .bind(&t.name)
                    .bind(t.role.as_str())
                    .bind(&t.host)
                    .bind(&t.hash)
                    .bind(rows::to_ms(t.created_at))
                    .execute(&self.pool)
                    .await;
                $crate::store::unique(r, || StoreError::TokenExists(t.name.clone())).map(drop)
            }

            async fn token_by_hash(
                &self,
                hash: &str,
            ) -> $crate::store::Result<Option<$crate::store::TokenRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::TokenRow>(queries::TOKEN_BY_HASH)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn tokens(&self) -> $crate::store::Result<Vec<$crate::store::TokenRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::TokenRow>(queries::TOKENS)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn revoke_token(&self, name: &str) -> $crate::store::Result<bool> {
                let r = sqlx::query($crate::store::queries::REVOKE_TOKEN)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn create_join_token(
                &self,
                t: &$crate::store::JoinTokenRecord,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows, StoreError};
                let labels = serde_json::to_string(&t.labels).expect("labels serialize");
                let r = sqlx::query(queries::INSERT_JOIN_TOKEN)
                    .bind(&t.name)
                    .bind(&t.hash)
                    .bind(&labels)
                    .bind(t.uses as i64)
                    .bind(rows::to_ms(t.expires_at))
                    .bind(&t.created_by)
                    .bind(rows::to_ms(t.created_at))
                    .execute(&self.pool)
                    .await;
                $crate::store::unique(r, || StoreError::TokenExists(t.name.clone())).map(drop)
            }

            async fn join_token_by_hash(
                &self,
                hash: &str,
            ) -> $crate::store::Result<Option<$crate::store::JoinTokenRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::JoinTokenRow>(queries::JOIN_TOKEN_BY_HASH)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn join_tokens(
                &self,
            ) -> $crate::store::Result<Vec<$crate::store::JoinTokenRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::JoinTokenRow>(queries::JOIN_TOKENS)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn revoke_join_token(&self, name: &str) -> $crate::store::Result<bool> {
                let r = sqlx::query($crate::store::queries::REVOKE_JOIN_TOKEN)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn join_host(
                &self,
                join: &str,
                host: &str,
                labels: &std::collections::BTreeMap<String, String>,
                agent_version: Option<&str>,
                t: &$crate::store::TokenRecord,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<bool> {
                use $crate::store::{queries, rows, StoreError};
                let labels = serde_json::to_string(labels).expect("labels serialize");
                let mut tx = self.begin_write().await?;
                let used = sqlx::query(queries::USE_JOIN_TOKEN)
                    .bind(join)
                    .bind(rows::to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                if used.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(queries::JOIN_HOST)
                    .bind(host)
                    .bind(&labels)
                    .bind(agent_version)
                    .bind(rows::to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                let r = sqlx::query(queries::INSERT_TOKEN)
                    .bind(&t.name)
                    .bind(t.role.as_str())
                    .bind(&t.host)
                    .bind(&t.hash)
                    .bind(rows::to_ms(t.created_at))
                    .execute(&mut *tx)
                    .await;
                $crate::store::unique(r, || StoreError::TokenExists(t.name.clone()))?;
                tx.commit().await?;
                Ok(true)
            }
        } $($rest)* }
    };
}

pub(in crate::store) use token_methods;
