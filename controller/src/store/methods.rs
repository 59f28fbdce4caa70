//! The [`Store`](super::Store) methods whose SQL, binding and row mapping are the same on
//! both databases, written once: `impl_store!` expands them, with the backend's own methods,
//! into one `impl Store` per backend. (A macro rather than generic functions: sqlx code
//! generic over the database needs a bound per bound type and per executor, and those
//! futures then fail `async_trait`'s `Send` check.)
//!
//! A backend provides, beside the methods it passes in:
//! - `self.pool`: its connection pool;
//! - `self.begin_write()`: how it starts a transaction that writes;
//! - `Self::lock_app(&mut tx, app)`: what keeps two writers from racing for an app's next
//!   spec version inside that transaction;
//! - `Self::TOUCH_HOST`: the SQL that moves a host's `last_seen` (`$1` = now, `$2` = host).

macro_rules! impl_store {
    ($store:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
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
                match inserted {
                    Err(e) if $crate::store::is_unique_violation(&e) => {
                        return Err(StoreError::SeqTaken {
                            app: r.app.clone(),
                            seq: r.seq,
                        })
                    }
                    other => other?,
                };
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
                match r {
                    Err(e) if $crate::store::is_unique_violation(&e) => {
                        Err(StoreError::TokenExists(t.name.clone()))
                    }
                    other => other.map(|_| ()).map_err(Into::into),
                }
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
                match r {
                    Err(e) if $crate::store::is_unique_violation(&e) => {
                        Err(StoreError::TokenExists(t.name.clone()))
                    }
                    other => other.map(|_| ()).map_err(Into::into),
                }
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
                match r {
                    Err(e) if $crate::store::is_unique_violation(&e) => {
                        return Err(StoreError::TokenExists(t.name.clone()))
                    }
                    other => other?,
                };
                tx.commit().await?;
                Ok(true)
            }

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

            $($own)*
        }
    };
}

pub(super) use impl_store;
