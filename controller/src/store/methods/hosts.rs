//! The shared [`Store`](crate::store::Store) methods for hosts and their status reports.

/// Hosts: registering, last seen, lifecycle, down marks, labels, removal; and status reports.
/// Added to `$methods`, then handed on to `$next` (see `impl_store!`).
macro_rules! host_methods {
    ($store:ty { $($methods:tt)* } $next:ident $($rest:ident)*) => {
        $crate::store::methods::$next! { $store { $($methods)*

            async fn register_host(
                &self,
                host: &str,
                labels: &std::collections::BTreeMap<String, String>,
                agent_version: Option<&str>,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<$crate::store::HostRecord> {
                use $crate::store::{queries, rows, StoreError};
                let labels = serde_json::to_string(labels).expect("labels serialize");
                sqlx::query(queries::REGISTER_HOST)
                    .bind(host)
                    .bind(&labels)
                    .bind(agent_version)
                    .bind(rows::to_ms(now))
                    .execute(&self.pool)
                    .await?;
                self.host(host).await?.ok_or_else(|| StoreError::Corrupt {
                    what: format!("host {host}"),
                    reason: "vanished after registering".into(),
                })
            }

            async fn host(
                &self,
                host: &str,
            ) -> $crate::store::Result<Option<$crate::store::HostRecord>> {
                use $crate::store::{queries, rows};
                rows::record(
                    sqlx::query_as::<_, rows::HostRow>(queries::HOST)
                        .bind(host)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn hosts(&self) -> $crate::store::Result<Vec<$crate::store::HostRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::HostRow>(queries::HOSTS)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn touch_host(
                &self,
                host: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<()> {
                sqlx::query(Self::TOUCH_HOST)
                    .bind($crate::store::rows::to_ms(now))
                    .bind(host)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn held_hosts(
                &self,
            ) -> $crate::store::Result<Vec<(String, slipway_proto::api::HostLifecycle)>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as($crate::store::queries::HELD_HOSTS)
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|(h, l)| {
                        let l = l.parse().map_err(|e: slipway_proto::api::UnknownLifecycle| {
                            $crate::store::StoreError::Corrupt {
                                what: format!("lifecycle of host {h}"),
                                reason: e.to_string(),
                            }
                        })?;
                        Ok((h, l))
                    })
                    .collect()
            }

            async fn set_host_lifecycle(
                &self,
                host: &str,
                lifecycle: slipway_proto::api::HostLifecycle,
            ) -> $crate::store::Result<bool> {
                let r = sqlx::query($crate::store::queries::SET_HOST_LIFECYCLE)
                    .bind(lifecycle.as_str())
                    .bind(host)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn mark_host_down(
                &self,
                host: &str,
                at: std::time::SystemTime,
            ) -> $crate::store::Result<bool> {
                let r = sqlx::query($crate::store::queries::MARK_HOST_DOWN)
                    .bind($crate::store::rows::to_ms(at))
                    .bind(host)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn set_host_labels(
                &self,
                host: &str,
                labels: &std::collections::BTreeMap<String, String>,
            ) -> $crate::store::Result<bool> {
                let labels = serde_json::to_string(labels).expect("labels serialize");
                let r = sqlx::query($crate::store::queries::SET_HOST_LABELS)
                    .bind(&labels)
                    .bind(host)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn remove_host(
                &self,
                host: &str,
            ) -> $crate::store::Result<Option<Vec<String>>> {
                use $crate::store::queries;
                let mut tx = self.begin_write().await?;
                let tokens: Vec<String> = sqlx::query_scalar(queries::HOST_TOKENS)
                    .bind(host)
                    .fetch_all(&mut *tx)
                    .await?;
                let gone = sqlx::query(queries::DELETE_HOST)
                    .bind(host)
                    .execute(&mut *tx)
                    .await?;
                if gone.rows_affected() == 0 {
                    return Ok(None);
                }
                for q in [
                    queries::DELETE_HOST_TOKENS,
                    queries::DELETE_HOST_STATUS,
                    queries::DELETE_HOST_SECRET_KEY,
                ] {
                    sqlx::query(q).bind(host).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(Some(tokens))
            }

            async fn put_status(
                &self,
                host: &str,
                s: &slipway_proto::api::HostStatus,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows};
                let phase = serde_json::to_string(&s.phase).expect("phase serializes");
                let mut tx = self.begin_write().await?;
                sqlx::query(queries::PUT_STATUS)
                    .bind(host)
                    .bind(&s.app)
                    .bind(s.seq as i64)
                    .bind(&s.image)
                    .bind(&phase)
                    .bind(rows::to_ms(now))
                    .bind(&s.expired_at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(queries::INSERT_STATUS_EVENT)
                    .bind(host)
                    .bind(&s.app)
                    .bind(s.seq as i64)
                    .bind(&phase)
                    .bind(rows::to_ms(now))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(Self::TOUCH_HOST)
                    .bind(rows::to_ms(now))
                    .bind(host)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn statuses(
                &self,
                app: Option<&str>,
            ) -> $crate::store::Result<Vec<$crate::store::StatusRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::StatusRow>(queries::STATUSES)
                        .bind(app)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }
        } $($rest)* }
    };
}

pub(in crate::store) use host_methods;
