//! The shared [`Store`](crate::store::Store) methods for rollout documents.

/// Rollout documents: stored once, updated by compare-and-set on their revision.
/// Added to `$methods`, then handed on to `$next` (see `impl_store!`).
macro_rules! rollout_methods {
    ($store:ty { $($methods:tt)* } $next:ident $($rest:ident)*) => {
        $crate::store::methods::$next! { $store { $($methods)*

            async fn insert_rollout(
                &self,
                app: &str,
                seq: u64,
                doc: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<bool> {
                use $crate::store::{queries, rows};
                let r = sqlx::query(queries::INSERT_ROLLOUT)
                    .bind(app)
                    .bind(seq as i64)
                    .bind(doc)
                    .bind(rows::to_ms(now))
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn rollout(
                &self,
                app: &str,
                seq: u64,
            ) -> $crate::store::Result<Option<$crate::store::RolloutRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::RolloutRow>(queries::ROLLOUT)
                        .bind(app)
                        .bind(seq as i64)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn latest_rollout(
                &self,
                app: &str,
            ) -> $crate::store::Result<Option<$crate::store::RolloutRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::RolloutRow>(queries::LATEST_ROLLOUT)
                        .bind(app)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn update_rollout(
                &self,
                app: &str,
                seq: u64,
                rev: u64,
                doc: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<bool> {
                use $crate::store::{queries, rows};
                let r = sqlx::query(queries::UPDATE_ROLLOUT)
                    .bind(doc)
                    .bind(rows::to_ms(now))
                    .bind(app)
                    .bind(seq as i64)
                    .bind(rev as i64)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }
        } $($rest)* }
    };
}

pub(in crate::store) use rollout_methods;
