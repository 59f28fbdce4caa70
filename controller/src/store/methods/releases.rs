//! The shared [`Store`](crate::store::Store) methods for apps, releases and their signatures.

/// Apps (versioned specs), releases (append-only) and their signatures.
/// Added to `$methods`, then handed on to `$next` (see `impl_store!`).
macro_rules! release_methods {
    ($store:ty { $($methods:tt)* } $next:ident $($rest:ident)*) => {
        $crate::store::methods::$next! { $store { $($methods)*

            async fn apply_app(
                &self,
                spec: &slipway_proto::AppSpec,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<($crate::store::AppRecord, bool)> {
                use $crate::store::{queries, rows};
                let json = serde_json::to_string(spec).expect("app spec serializes");
                let mut tx = self.begin_write().await?;
                Self::lock_app(&mut tx, &spec.name).await?;
                let current: Option<$crate::store::AppRecord> = rows::record(
                    sqlx::query_as::<_, rows::AppRow>(queries::APP)
                        .bind(spec.name.as_str())
                        .fetch_optional(&mut *tx)
                        .await?,
                )?;
                if let Some(cur) = current.as_ref().filter(|c| &c.spec == spec) {
                    return Ok((cur.clone(), false));
                }
                let version = current.map_or(1, |c| c.version + 1);
                sqlx::query(queries::INSERT_APP)
                    .bind(spec.name.as_str())
                    .bind(version as i64)
                    .bind(&json)
                    .bind(rows::to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                let rec = $crate::store::AppRecord {
                    name: spec.name.to_string(),
                    version,
                    spec: spec.clone(),
                    updated_at: now,
                };
                Ok((rec, true))
            }

            async fn app(&self, name: &str) -> $crate::store::Result<Option<$crate::store::AppRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::AppRow>(queries::APP)
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn apps(&self) -> $crate::store::Result<Vec<$crate::store::AppRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::AppRow>(queries::APPS)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn latest_seq(&self, app: &str) -> $crate::store::Result<u64> {
                let seq: Option<i64> = sqlx::query_scalar($crate::store::queries::LATEST_SEQ)
                    .bind(app)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(seq.unwrap_or(0) as u64)
            }

            async fn insert_release(
                &self,
                r: &$crate::store::ReleaseRecord,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows, StoreError};
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(queries::INSERT_RELEASE)
                    .bind(&r.app)
                    .bind(r.seq as i64)
                    .bind(&r.image)
                    .bind(&r.requested)
                    .bind(r.spec_version as i64)
                    .bind(r.rollback_of.map(|s| s as i64))
                    .bind(&r.created_by)
                    .bind(rows::to_ms(r.created_at))
                    .execute(&mut *tx)
                    .await;
                $crate::store::unique(inserted, || StoreError::SeqTaken {
                    app: r.app.clone(),
                    seq: r.seq,
                })?;
                sqlx::query(queries::INSERT_SIGNATURE)
                    .bind(&r.app)
                    .bind(r.seq as i64)
                    .bind(&r.envelope)
                    .bind(rows::to_ms(r.expires))
                    .bind(rows::to_ms(r.created_at))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn release(
                &self,
                app: &str,
                seq: u64,
            ) -> $crate::store::Result<Option<$crate::store::ReleaseRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::ReleaseRow>(queries::RELEASE)
                        .bind(app)
                        .bind(seq as i64)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn releases(
                &self,
                app: &str,
            ) -> $crate::store::Result<Vec<$crate::store::ReleaseRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::ReleaseRow>(queries::RELEASES)
                        .bind(app)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn latest_releases(
                &self,
            ) -> $crate::store::Result<Vec<$crate::store::ReleaseRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::ReleaseRow>(queries::LATEST_RELEASES)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn add_signature(
                &self,
                app: &str,
                seq: u64,
                envelope: &str,
                expires: std::time::SystemTime,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows};
                sqlx::query(queries::INSERT_SIGNATURE)
                    .bind(app)
                    .bind(seq as i64)
                    .bind(envelope)
                    .bind(rows::to_ms(expires))
                    .bind(rows::to_ms(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        } $($rest)* }
    };
}

pub(in crate::store) use release_methods;
