//! The shared [`Store`](crate::store::Store) methods for the audit log and the event log.

/// The audit log, and the event log with its retention.
/// Added to `$methods`, then handed on to `$next` (see `impl_store!`).
macro_rules! event_methods {
    ($store:ty { $($methods:tt)* } $next:ident $($rest:ident)*) => {
        $crate::store::methods::$next! { $store { $($methods)*

            async fn audit(
                &self,
                actor: &str,
                action: &str,
                object: &str,
                detail: &str,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<()> {
                use $crate::store::{queries, rows};
                sqlx::query(queries::AUDIT)
                    .bind(rows::to_ms(now))
                    .bind(actor)
                    .bind(action)
                    .bind(object)
                    .bind(detail)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn audit_find(
                &self,
                filter: &$crate::store::AuditFilter,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::AuditRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::AuditRow>(queries::AUDIT_LOG)
                        .bind(limit as i64)
                        .bind(filter.actor.as_deref())
                        .bind(filter.app.as_deref())
                        .bind(filter.since.map_or(0, rows::to_ms))
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn add_event(
                &self,
                kind: &str,
                app: Option<&str>,
                detail: &serde_json::Value,
                now: std::time::SystemTime,
            ) -> $crate::store::Result<$crate::store::EventRecord> {
                use $crate::store::{queries, rows};
                let id: i64 = sqlx::query_scalar(queries::INSERT_EVENT)
                    .bind(rows::to_ms(now))
                    .bind(kind)
                    .bind(app)
                    .bind(detail.to_string())
                    .fetch_one(&self.pool)
                    .await?;
                Ok($crate::store::EventRecord {
                    id: id as u64,
                    at: humantime::format_rfc3339_millis(rows::from_ms(rows::to_ms(now)))
                        .to_string(),
                    kind: kind.to_string(),
                    app: app.map(str::to_string),
                    detail: detail.clone(),
                })
            }

            async fn events_since(
                &self,
                since: u64,
                app: Option<&str>,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::EventRecord>> {
                use $crate::store::{queries, rows};
                rows::records(
                    sqlx::query_as::<_, rows::EventRow>(queries::EVENTS_SINCE)
                        .bind(since as i64)
                        .bind(app)
                        .bind(limit as i64)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn prune_events(
                &self,
                before: std::time::SystemTime,
                keep: u64,
            ) -> $crate::store::Result<u64> {
                use $crate::store::{queries, rows};
                let r = sqlx::query(queries::PRUNE_EVENTS)
                    .bind(rows::to_ms(before))
                    .bind(keep as i64)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }
        } $($rest)* }
    };
}

pub(in crate::store) use event_methods;
