//! The shared store for several controllers: one PostgreSQL database.
//!
//! Beyond the tables (the same as SQLite's), two things only a shared database can do:
//! - **LISTEN/NOTIFY**: [`Store::notify_changed`] sends `NOTIFY slipway_changed` with this
//!   replica's id; a listener connection per replica ticks [`Store::changes`] on every
//!   notification from another replica, so a release published on one controller wakes the
//!   long-polls waiting on all of them.
//! - **An advisory lock** elects the replica that drives rollouts: [`Store::try_lead`] takes
//!   `pg_try_advisory_lock` on a connection of its own and keeps it while that connection
//!   lives. When the leader dies its session ends, the lock is released, and the next
//!   replica to ask takes over and continues from the stored rollouts.

use super::*;
use futures_util::future::BoxFuture;
use slipway_proto::api::HostStatus;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Row};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

/// Schema migrations, embedded in the binary; applied in order on open (sqlx takes an
/// advisory lock of its own while migrating, so replicas starting together are safe).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "rollouts",
        include_str!("../../migrations/postgres/0002_rollouts.sql"),
    ),
    (
        3,
        "stale",
        include_str!("../../migrations/postgres/0003_stale.sql"),
    ),
];

/// Connections per replica: long-polls answer from memory, so the store sees requests that
/// write (reports, releases) and the rollout driver; a handful is plenty.
pub const POSTGRES_POOL: u32 = 16;
/// A connection the pool cannot hand out by then means the database is down or overloaded.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The NOTIFY channel every replica listens on.
pub const CHANGE_CHANNEL: &str = "slipway_changed";
/// Key of the advisory lock the rollout-driving replica holds ("slipway" in ASCII).
pub const LEAD_LOCK_KEY: i64 = 0x0073_6c69_7077_6179;
/// TCP keepalive on the lead connection, so the database notices a leader whose machine
/// vanished without closing its socket (idle + interval * count, about 25 s) and releases
/// the lock; a killed process closes its socket and releases it at once.
const LEAD_KEEPALIVE: &str =
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3";
/// Pause before reconnecting the listener after the database went away.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

pub struct PostgresStore {
    pool: PgPool,
    connect: PgConnectOptions,
    /// Random id of this replica, the payload of its notifications (its own are ignored).
    replica: String,
    /// The connection holding the lead lock, and whether it holds it.
    lead: Mutex<(Option<PgConnection>, bool)>,
    changes: watch::Receiver<u64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PostgresStore {
    /// Connects to and migrates the database at `url` (`postgres://USER[:PASS]@HOST/DB`),
    /// and starts listening for other replicas' changes.
    pub async fn open(url: &str) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            url: redact(url),
            source,
        };
        let connect = PgConnectOptions::from_str(url).map_err(open_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_POOL)
            .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
            .connect_with(connect.clone())
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
        let replica = hex::encode(rand::random::<[u8; 8]>());
        // Subscribed before open returns: no change made after it can be missed.
        let mut listener = PgListener::connect_with(&pool).await.map_err(open_err)?;
        listener.listen(CHANGE_CHANNEL).await.map_err(open_err)?;
        let (tx, changes) = watch::channel(0u64);
        let listener = tokio::spawn(listen(listener, replica.clone(), tx));
        Ok(Self {
            pool,
            connect,
            replica,
            lead: Mutex::new((None, false)),
            changes,
            listener,
        })
    }
}

/// Ticks `tx` on every notification of another replica, and after every reconnection (a
/// notification sent meanwhile is lost, so assume one was). Ends when the store is dropped.
async fn listen(mut listener: PgListener, replica: String, tx: watch::Sender<u64>) {
    let bump = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                if n.payload() != replica {
                    bump(&tx);
                }
            }
            // The connection was lost; the next call reconnects and re-subscribes.
            Ok(None) => {
                tracing::warn!("lost the database notification connection; reconnecting");
                tokio::time::sleep(LISTEN_RETRY).await;
                bump(&tx);
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for other controllers' changes failed; retrying");
                tokio::time::sleep(LISTEN_RETRY).await;
                bump(&tx);
            }
        }
    }
}

/// One lead check on an owned connection: a live connection that holds the lock still does
/// (a session lock lasts as long as its session); otherwise (re)connect and try the lock.
/// Returns the connection to keep and whether this replica leads. (Boxed: a plain `async fn`
/// here trips the compiler's `Send` check of `async_trait` futures over sqlx executors.)
fn lead_step(
    conn: Option<PgConnection>,
    leading: bool,
    connect: &PgConnectOptions,
) -> BoxFuture<'_, (Option<PgConnection>, Result<bool>)> {
    Box::pin(lead_step_inner(conn, leading, connect))
}

async fn lead_step_inner(
    conn: Option<PgConnection>,
    leading: bool,
    connect: &PgConnectOptions,
) -> (Option<PgConnection>, Result<bool>) {
    let conn = match conn {
        Some(mut c) => match c.ping().await {
            Ok(()) if leading => return (Some(c), Ok(true)),
            Ok(()) => Some(c),
            Err(e) => {
                if leading {
                    tracing::warn!(error = %e, "lost the connection holding the rollout lead");
                }
                None
            }
        },
        None => None,
    };
    let mut c = match conn {
        Some(c) => c,
        None => match open_lead(connect).await {
            Ok(c) => c,
            Err(e) => return (None, Err(e.into())),
        },
    };
    match try_lock(&mut c).await {
        Ok(got) => (Some(c), Ok(got)),
        Err(e) => (None, Err(e.into())),
    }
}

async fn open_lead(connect: &PgConnectOptions) -> sqlx::Result<PgConnection> {
    let mut c = PgConnection::connect_with(connect).await?;
    sqlx::Executor::execute(&mut c, LEAD_KEEPALIVE).await?;
    Ok(c)
}

async fn try_lock(c: &mut PgConnection) -> sqlx::Result<bool> {
    let row = sqlx::Executor::fetch_one(
        &mut *c,
        sqlx::query("SELECT pg_try_advisory_lock($1)").bind(LEAD_LOCK_KEY),
    )
    .await?;
    row.try_get(0)
}

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn app_row(r: &PgRow) -> Result<AppRecord> {
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

fn release_row(r: &PgRow) -> Result<ReleaseRecord> {
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

fn host_row(r: &PgRow) -> Result<HostRecord> {
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

fn token_row(r: &PgRow) -> Result<TokenRecord> {
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

fn rollout_row(r: &PgRow) -> Result<RolloutRecord> {
    Ok(RolloutRecord {
        app: r.try_get("app")?,
        seq: r.try_get::<i64, _>("seq")? as u64,
        rev: r.try_get::<i64, _>("rev")? as u64,
        doc: r.try_get("doc")?,
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn apply_app(&self, spec: &AppSpec, now: SystemTime) -> Result<(AppRecord, bool)> {
        let json = serde_json::to_string(spec).expect("app spec serializes");
        let mut tx = self.pool.begin().await?;
        // One writer per app name at a time, so two replicas never race for a version.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("app/{}", spec.name))
            .execute(&mut *tx)
            .await?;
        let current = sqlx::query(
            "SELECT name, version, spec, created_at FROM app_specs WHERE name = $1 \
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
        sqlx::query(
            "INSERT INTO app_specs (name, version, spec, created_at) VALUES ($1, $2, $3, $4)",
        )
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
            "SELECT name, version, spec, created_at FROM app_specs WHERE name = $1 \
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
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM releases WHERE app = $1")
            .bind(app)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0) as u64)
    }

    async fn insert_release(&self, r: &NewRelease) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO releases (app, seq, image, requested, spec_version, rollback_of, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            "INSERT INTO signatures (app, seq, envelope, expires, signed_at) \
             VALUES ($1, $2, $3, $4, $5)",
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
            "SELECT {RELEASE_COLS} FROM {RELEASE_FROM} WHERE r.app = $1 AND r.seq = $2"
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
            "SELECT {RELEASE_COLS} FROM {RELEASE_FROM} WHERE r.app = $1 ORDER BY r.seq"
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
            "INSERT INTO signatures (app, seq, envelope, expires, signed_at) \
             VALUES ($1, $2, $3, $4, $5)",
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
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (host) DO UPDATE SET \
             labels = excluded.labels, agent_version = excluded.agent_version, \
             last_seen = excluded.last_seen",
        )
        .bind(host)
        .bind(&labels)
        .bind(agent_version)
        .bind(to_ms(now))
        .execute(&self.pool)
        .await?;
        self.host(host)
            .await?
            .ok_or_else(|| corrupt(format!("host {host}"), "vanished after registering"))
    }

    async fn host(&self, host: &str) -> Result<Option<HostRecord>> {
        sqlx::query("SELECT * FROM hosts WHERE host = $1")
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
        sqlx::query("UPDATE hosts SET last_seen = GREATEST(last_seen, $1) WHERE host = $2")
            .bind(to_ms(now))
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_status(&self, host: &str, s: &HostStatus, now: SystemTime) -> Result<()> {
        let phase = serde_json::to_string(&s.phase).expect("phase serializes");
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO host_status (host, app, seq, image, phase, updated_at, expired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host, app) DO UPDATE SET \
             seq = excluded.seq, image = excluded.image, phase = excluded.phase, \
             updated_at = excluded.updated_at, expired_at = excluded.expired_at",
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
        sqlx::query(
            "INSERT INTO status_events (host, app, seq, phase, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(host)
        .bind(&s.app)
        .bind(s.seq as i64)
        .bind(&phase)
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE hosts SET last_seen = GREATEST(last_seen, $1) WHERE host = $2")
            .bind(to_ms(now))
            .bind(host)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn statuses(&self, app: Option<&str>) -> Result<Vec<StatusRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM host_status WHERE ($1::text IS NULL OR app = $1) ORDER BY app, host",
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
            "INSERT INTO tokens (name, role, host, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
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
        sqlx::query("SELECT * FROM tokens WHERE hash = $1")
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
        let r = sqlx::query("DELETE FROM tokens WHERE name = $1")
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
        sqlx::query(
            "INSERT INTO audit (at, actor, action, object, detail) VALUES ($1, $2, $3, $4, $5)",
        )
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
        sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT $1")
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
            "INSERT INTO rollouts (app, seq, rev, doc, updated_at) VALUES ($1, $2, 1, $3, $4) \
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
        sqlx::query("SELECT * FROM rollouts WHERE app = $1 AND seq = $2")
            .bind(app)
            .bind(seq as i64)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| rollout_row(&r))
            .transpose()
    }

    async fn latest_rollout(&self, app: &str) -> Result<Option<RolloutRecord>> {
        sqlx::query("SELECT * FROM rollouts WHERE app = $1 ORDER BY seq DESC LIMIT 1")
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
            "UPDATE rollouts SET rev = rev + 1, doc = $1, updated_at = $2 \
             WHERE app = $3 AND seq = $4 AND rev = $5",
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

    async fn try_lead(&self) -> Result<bool> {
        let mut guard = self.lead.lock().await;
        let (conn, was_leading) = (guard.0.take(), guard.1);
        let (conn, leading) = lead_step(conn, was_leading, &self.connect).await;
        *guard = (conn, leading.as_ref().is_ok_and(|l| *l));
        leading
    }

    async fn notify_changed(&self) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(&self.replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://slipway:s3cret@db:5432/slipway"),
            "postgres://slipway:***@db:5432/slipway"
        );
        assert_eq!(
            redact("postgres://slipway@db/slipway"),
            "postgres://slipway@db/slipway"
        );
        assert_eq!(redact("postgres:///slipway"), "postgres:///slipway");
    }
}
