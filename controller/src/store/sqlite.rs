//! The embedded store: one SQLite file (WAL mode) under the controller's data dir.

use super::*;
use slipway_proto::api::HostStatus;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, SqlitePool};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// Schema migrations, embedded in the binary; applied in order on open.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "rollouts",
        include_str!("../../migrations/sqlite/0002_rollouts.sql"),
    ),
    (
        3,
        "stale",
        include_str!("../../migrations/sqlite/0003_stale.sql"),
    ),
];

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the database at `url` (`sqlite://PATH`).
    pub async fn open(url: &str) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(crate::defaults::SQLITE_POOL)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(v, d, sql)| {
                        Migration::new(
                            *v,
                            Cow::Borrowed(*d),
                            MigrationType::Simple,
                            Cow::Borrowed(*sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator.run(&pool).await?;
        Ok(Self { pool })
    }
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn app_row(r: &SqliteRow) -> Result<AppRecord> {
    let name: String = r.try_get("name")?;
    let spec: String = r.try_get("spec")?;
    Ok(AppRecord {
        spec: serde_json::from_str(&spec).map_err(|e| corrupt(format!("app spec {name}"), e))?,
        version: r.try_get::<i64, _>("version")? as u64,
        updated_at: from_ms(r.try_get("created_at")?),
        name,
    })
}

const RELEASE_COLS: &str = "r.app, r.seq, r.image, r.requested, r.spec_version, r.rollback_of, \
     r.created_by, r.created_at, s.envelope, s.expires";
/// Joins each release with its newest signature.
const RELEASE_FROM: &str = "releases r JOIN signatures s ON s.id = \
     (SELECT MAX(id) FROM signatures WHERE app = r.app AND seq = r.seq)";

fn release_row(r: &SqliteRow) -> Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        app: r.try_get("app")?,
        seq: r.try_get::<i64, _>("seq")? as u64,
        image: r.try_get("image")?,
        requested: r.try_get("requested")?,
        spec_version: r.try_get::<i64, _>("spec_version")? as u64,
        rollback_of: r
            .try_get::<Option<i64>, _>("rollback_of")?
            .map(|s| s as u64),
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?),
        envelope: r.try_get("envelope")?,
        expires: from_ms(r.try_get("expires")?),
    })
}

fn host_row(r: &SqliteRow) -> Result<HostRecord> {
    let host: String = r.try_get("host")?;
    let labels: String = r.try_get("labels")?;
    Ok(HostRecord {
        labels: serde_json::from_str(&labels)
            .map_err(|e| corrupt(format!("labels of host {host}"), e))?,
        agent_version: r.try_get("agent_version")?,
        registered_at: from_ms(r.try_get("registered_at")?),
        last_seen: from_ms(r.try_get("last_seen")?),
        host,
    })
}

fn token_row(r: &SqliteRow) -> Result<TokenRecord> {
    let name: String = r.try_get("name")?;
    let role: String = r.try_get("role")?;
    Ok(TokenRecord {
        role: role.parse().map_err(|e: slipway_proto::api::UnknownRole| {
            corrupt(format!("token {name}"), e.to_string())
        })?,
        host: r.try_get("host")?,
        hash: r.try_get("hash")?,
        created_at: from_ms(r.try_get("created_at")?),
        name,
    })
}

fn rollout_row(r: &SqliteRow) -> Result<RolloutRecord> {
    Ok(RolloutRecord {
        app: r.try_get("app")?,
        seq: r.try_get::<i64, _>("seq")? as u64,
        rev: r.try_get::<i64, _>("rev")? as u64,
        doc: r.try_get("doc")?,
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

impl SqliteStore {
    /// `BEGIN IMMEDIATE`, tried again a few times when SQLite answers "database is locked"
    /// without waiting out `busy_timeout` (it does so when another process opens the file or
    /// checkpoints the WAL at that moment, e.g. `slipway-controller token-create`). Nothing
    /// has happened when BEGIN fails, so trying again is safe.
    async fn begin_write(
        &self,
    ) -> std::result::Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        let mut wait = Duration::from_millis(20);
        for _ in 1..crate::defaults::SQLITE_BEGIN_ATTEMPTS {
            match self.pool.begin_with("BEGIN IMMEDIATE").await {
                Err(e) if is_busy(&e) => {
                    tracing::debug!(error = %e, "database busy at BEGIN; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}

/// SQLITE_BUSY (5) and its extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 5))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait::async_trait]
// Write transactions start with BEGIN IMMEDIATE: a deferred one that reads first fails at once
// with "database is locked" under WAL when another writer got in between (busy_timeout
// cannot help an upgrade from read to write).
impl Store for SqliteStore {
    async fn apply_app(&self, spec: &AppSpec, now: SystemTime) -> Result<(AppRecord, bool)> {
        let json = serde_json::to_string(spec).expect("app spec serializes");
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(
            "SELECT name, version, spec, created_at FROM app_specs WHERE name = ? \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(spec.name.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| app_row(&r))
        .transpose()?;
        if let Some(cur) = current.as_ref().filter(|c| &c.spec == spec) {
            return Ok((cur.clone(), false));
        }
        let version = current.map_or(1, |c| c.version + 1);
        sqlx::query("INSERT INTO app_specs (name, version, spec, created_at) VALUES (?, ?, ?, ?)")
            .bind(spec.name.as_str())
            .bind(version as i64)
            .bind(&json)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            AppRecord {
                name: spec.name.to_string(),
                version,
                spec: spec.clone(),
                updated_at: now,
            },
            true,
        ))
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>> {
        sqlx::query(
            "SELECT name, version, spec, created_at FROM app_specs WHERE name = ? \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| app_row(&r))
        .transpose()
    }

    async fn apps(&self) -> Result<Vec<AppRecord>> {
        sqlx::query(
            "SELECT a.name, a.version, a.spec, a.created_at FROM app_specs a \
             WHERE a.version = (SELECT MAX(version) FROM app_specs WHERE name = a.name) \
             ORDER BY a.name",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(app_row)
        .collect()
    }

    async fn latest_seq(&self, app: &str) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM releases WHERE app = ?")
            .bind(app)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0) as u64)
    }

    async fn insert_release(&self, r: &NewRelease) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO releases (app, seq, image, requested, spec_version, rollback_of, \
             created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.app)
        .bind(r.seq as i64)
        .bind(&r.image)
        .bind(&r.requested)
        .bind(r.spec_version as i64)
        .bind(r.rollback_of.map(|s| s as i64))
        .bind(&r.created_by)
        .bind(to_ms(r.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::SeqTaken {
                    app: r.app.clone(),
                    seq: r.seq,
                })
            }
            other => other?,
        };
        sqlx::query(
            "INSERT INTO signatures (app, seq, envelope, expires, signed_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&r.app)
        .bind(r.seq as i64)
        .bind(&r.envelope)
        .bind(to_ms(r.expires))
        .bind(to_ms(r.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, app: &str, seq: u64) -> Result<Option<ReleaseRecord>> {
        sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM {RELEASE_FROM} WHERE r.app = ? AND r.seq = ?"
        ))
        .bind(app)
        .bind(seq as i64)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| release_row(&r))
        .transpose()
    }

    async fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>> {
        sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM {RELEASE_FROM} WHERE r.app = ? ORDER BY r.seq"
        ))
        .bind(app)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(release_row)
        .collect()
    }

    async fn latest_releases(&self) -> Result<Vec<ReleaseRecord>> {
        sqlx::query(&format!(
            "SELECT {RELEASE_COLS} FROM {RELEASE_FROM} \
             WHERE r.seq = (SELECT MAX(seq) FROM releases WHERE app = r.app) ORDER BY r.app"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(release_row)
        .collect()
    }

    async fn add_signature(
        &self,
        app: &str,
        seq: u64,
        envelope: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO signatures (app, seq, envelope, expires, signed_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(app)
        .bind(seq as i64)
        .bind(envelope)
        .bind(to_ms(expires))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn register_host(
        &self,
        host: &str,
        labels: &BTreeMap<String, String>,
        agent_version: Option<&str>,
        now: SystemTime,
    ) -> Result<HostRecord> {
        let labels = serde_json::to_string(labels).expect("labels serialize");
        sqlx::query(
            "INSERT INTO hosts (host, labels, agent_version, registered_at, last_seen) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (host) DO UPDATE SET labels = excluded.labels, \
             agent_version = excluded.agent_version, last_seen = excluded.last_seen",
        )
        .bind(host)
        .bind(&labels)
        .bind(agent_version)
        .bind(to_ms(now))
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        self.host(host)
            .await?
            .ok_or_else(|| corrupt(format!("host {host}"), "vanished after registering"))
    }

    async fn host(&self, host: &str) -> Result<Option<HostRecord>> {
        sqlx::query("SELECT * FROM hosts WHERE host = ?")
            .bind(host)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| host_row(&r))
            .transpose()
    }

    async fn hosts(&self) -> Result<Vec<HostRecord>> {
        sqlx::query("SELECT * FROM hosts ORDER BY host")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(host_row)
            .collect()
    }

    async fn touch_host(&self, host: &str, now: SystemTime) -> Result<()> {
        sqlx::query("UPDATE hosts SET last_seen = ? WHERE host = ?")
            .bind(to_ms(now))
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_status(&self, host: &str, s: &HostStatus, now: SystemTime) -> Result<()> {
        let phase = serde_json::to_string(&s.phase).expect("phase serializes");
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO host_status (host, app, seq, image, phase, updated_at, expired_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host, app) DO UPDATE SET seq = excluded.seq, \
             image = excluded.image, phase = excluded.phase, updated_at = excluded.updated_at, \
             expired_at = excluded.expired_at",
        )
        .bind(host)
        .bind(&s.app)
        .bind(s.seq as i64)
        .bind(&s.image)
        .bind(&phase)
        .bind(to_ms(now))
        .bind(&s.expired_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO status_events (host, app, seq, phase, at) VALUES (?, ?, ?, ?, ?)")
            .bind(host)
            .bind(&s.app)
            .bind(s.seq as i64)
            .bind(&phase)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE hosts SET last_seen = ? WHERE host = ?")
            .bind(to_ms(now))
            .bind(host)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn statuses(&self, app: Option<&str>) -> Result<Vec<StatusRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM host_status WHERE (?1 IS NULL OR app = ?1) ORDER BY app, host",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let host: String = r.try_get("host")?;
                let phase: String = r.try_get("phase")?;
                Ok(StatusRecord {
                    app: r.try_get("app")?,
                    seq: r.try_get::<i64, _>("seq")? as u64,
                    image: r.try_get("image")?,
                    phase: serde_json::from_str(&phase)
                        .map_err(|e| corrupt(format!("status of host {host}"), e))?,
                    updated_at: from_ms(r.try_get("updated_at")?),
                    expired_at: super::parse_expired_at(&host, r.try_get("expired_at")?)?,
                    host,
                })
            })
            .collect()
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO tokens (name, role, host, hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.host)
        .bind(&t.hash)
        .bind(to_ms(t.created_at))
        .execute(&self.pool)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => Err(StoreError::TokenExists(t.name.clone())),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        sqlx::query("SELECT * FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| token_row(&r))
            .transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        sqlx::query("SELECT * FROM tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_row)
            .collect()
    }

    async fn revoke_token(&self, name: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM tokens WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        object: &str,
        detail: &str,
        now: SystemTime,
    ) -> Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, object, detail) VALUES (?, ?, ?, ?, ?)")
            .bind(to_ms(now))
            .bind(actor)
            .bind(action)
            .bind(object)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.try_get::<i64, _>("id")? as u64,
                    at: from_ms(r.try_get("at")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    object: r.try_get("object")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn insert_rollout(
        &self,
        app: &str,
        seq: u64,
        doc: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO rollouts (app, seq, rev, doc, updated_at) VALUES (?, ?, 1, ?, ?) \
             ON CONFLICT (app, seq) DO NOTHING",
        )
        .bind(app)
        .bind(seq as i64)
        .bind(doc)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn rollout(&self, app: &str, seq: u64) -> Result<Option<RolloutRecord>> {
        sqlx::query("SELECT * FROM rollouts WHERE app = ? AND seq = ?")
            .bind(app)
            .bind(seq as i64)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| rollout_row(&r))
            .transpose()
    }

    async fn latest_rollout(&self, app: &str) -> Result<Option<RolloutRecord>> {
        sqlx::query("SELECT * FROM rollouts WHERE app = ? ORDER BY seq DESC LIMIT 1")
            .bind(app)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| rollout_row(&r))
            .transpose()
    }

    async fn update_rollout(
        &self,
        app: &str,
        seq: u64,
        rev: u64,
        doc: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE rollouts SET rev = rev + 1, doc = ?, updated_at = ? \
             WHERE app = ? AND seq = ? AND rev = ?",
        )
        .bind(doc)
        .bind(to_ms(now))
        .bind(app)
        .bind(seq as i64)
        .bind(rev as i64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
