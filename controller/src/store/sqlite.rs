//! The embedded store: one SQLite file (WAL mode) under the controller's data dir.

use super::methods::impl_store;
use super::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Sqlite, SqlitePool, Transaction};
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
    (
        4,
        "events",
        include_str!("../../migrations/sqlite/0004_events.sql"),
    ),
    (
        5,
        "secrets",
        include_str!("../../migrations/sqlite/0005_secrets.sql"),
    ),
    (
        6,
        "hosts lifecycle",
        include_str!("../../migrations/sqlite/0006_hosts_lifecycle.sql"),
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
        super::migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool })
    }
}

// What differs from PostgreSQL, used by the shared methods (see `methods/`).
impl SqliteStore {
    /// One controller moves `last_seen`, on its own clock: the report just received is the
    /// newest.
    const TOUCH_HOST: &'static str =
        "UPDATE hosts SET last_seen = $1, down_at = NULL WHERE host = $2";

    /// Nothing to lock: a write transaction starts with `BEGIN IMMEDIATE`, which already
    /// keeps every other writer out until it ends.
    async fn lock_app(_tx: &mut Transaction<'_, Sqlite>, _app: &str) -> sqlx::Result<()> {
        Ok(())
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`: a deferred one that reads first
    /// fails at once with "database is locked" under WAL when another writer got in between
    /// (busy_timeout cannot help an upgrade from read to write). BEGIN is tried again a few
    /// times when SQLite answers "database is locked" without waiting out busy_timeout (it
    /// does so when another process opens the file or checkpoints the WAL at that moment,
    /// e.g. `slipway-controller token-create`). Nothing has happened when BEGIN fails, so
    /// trying again is safe.
    async fn begin_write(&self) -> sqlx::Result<Transaction<'_, Sqlite>> {
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

impl_secret_store!(SqliteStore);
impl_store!(SqliteStore {});

#[cfg(test)]
mod tests {
    //! Every shared query once on SQLite, which runs them with PostgreSQL's `$N` parameters
    //! (the PostgreSQL side is `tests/postgres_store.rs`).

    use super::super::{ReleaseRecord, Store, StoreError, TokenRecord};
    use super::SqliteStore;
    use slipway_proto::api::{HostStatus, Phase, Role};
    use slipway_proto::AppSpec;
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    fn spec(image: &str) -> AppSpec {
        AppSpec::from_toml(&format!(
            "name = \"web\"\nimage = \"{image}\"\nlisten = 8080\ncontainer_port = 80\n"
        ))
        .unwrap()
    }

    fn release(seq: u64, at: SystemTime) -> ReleaseRecord {
        ReleaseRecord {
            app: "web".into(),
            seq,
            image: format!("reg/web@sha256:{}", "ab".repeat(32)),
            requested: format!("reg/web:v{seq}"),
            spec_version: 1,
            rollback_of: (seq > 1).then_some(seq - 1),
            created_by: "admin".into(),
            created_at: at,
            envelope: format!("{{\"seq\":{seq}}}"),
            expires: at + Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn every_shared_query_runs_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let s = SqliteStore::open(&url).await.unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let t1 = t0 + Duration::from_secs(5);

        assert!(s.apply_app(&spec("reg/web"), t0).await.unwrap().1);
        assert!(!s.apply_app(&spec("reg/web"), t0).await.unwrap().1);
        let (a, _) = s.apply_app(&spec("reg/web2"), t1).await.unwrap();
        assert_eq!((a.version, a.updated_at), (2, t1));
        assert_eq!(s.app("web").await.unwrap().unwrap().spec.image, "reg/web2");
        assert_eq!(s.apps().await.unwrap().len(), 1);

        assert_eq!(s.latest_seq("web").await.unwrap(), 0);
        s.insert_release(&release(1, t0)).await.unwrap();
        s.insert_release(&release(2, t1)).await.unwrap();
        let taken = s.insert_release(&release(2, t1)).await;
        assert!(
            matches!(taken, Err(StoreError::SeqTaken { seq: 2, .. })),
            "{taken:?}"
        );
        assert_eq!(s.latest_seq("web").await.unwrap(), 2);
        s.add_signature("web", 1, "{\"re\":1}", t1 + Duration::from_secs(60), t1)
            .await
            .unwrap();
        let r1 = s.release("web", 1).await.unwrap().unwrap();
        assert_eq!(r1.envelope, "{\"re\":1}", "the newest signature wins");
        assert_eq!(r1.expires, t1 + Duration::from_secs(60));
        let seqs: Vec<u64> = s
            .releases("web")
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
        let latest = s.latest_releases().await.unwrap();
        assert_eq!((latest.len(), latest[0].rollback_of), (1, Some(1)));

        let labels = BTreeMap::from([("role".to_string(), "web".to_string())]);
        s.register_host("h1", &labels, Some("0.1.0"), t0)
            .await
            .unwrap();
        let h = s.register_host("h1", &labels, None, t1).await.unwrap();
        assert_eq!(
            (h.registered_at, h.last_seen),
            (t0, t1),
            "registration time kept"
        );
        assert_eq!(h.agent_version, None);
        s.touch_host("h1", t1 + Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            s.hosts().await.unwrap()[0].last_seen,
            t1 + Duration::from_secs(1)
        );
        let status = |app: &str, expired_at: Option<&str>| HostStatus {
            app: app.into(),
            seq: 2,
            image: None,
            phase: Phase::Live,
            expired_at: expired_at.map(Into::into),
        };
        s.put_status("h1", &status("web", Some("2030-01-02T03:04:05Z")), t1)
            .await
            .unwrap();
        s.put_status("h1", &status("api", None), t1).await.unwrap();
        let web = s.statuses(Some("web")).await.unwrap();
        assert_eq!((web.len(), web[0].seq), (1, 2));
        assert!(web[0].expired_at.is_some());
        assert_eq!(s.statuses(None).await.unwrap().len(), 2);

        let tok = TokenRecord {
            name: "agent-h1".into(),
            role: Role::Agent,
            host: Some("h1".into()),
            hash: "1".repeat(64),
            created_at: t0,
        };
        s.create_token(&tok).await.unwrap();
        let dup = s.create_token(&tok).await;
        assert!(matches!(dup, Err(StoreError::TokenExists(_))), "{dup:?}");
        let got = s.token_by_hash(&tok.hash).await.unwrap().unwrap();
        assert_eq!((got.role, got.host.as_deref()), (Role::Agent, Some("h1")));
        assert_eq!(s.tokens().await.unwrap().len(), 1);
        assert!(s.revoke_token("agent-h1").await.unwrap());
        assert!(!s.revoke_token("agent-h1").await.unwrap());

        for i in 0..3 {
            s.audit("admin", "x", &format!("o{i}"), "", t0)
                .await
                .unwrap();
        }
        let log = s.audit_log(2).await.unwrap();
        let objects: Vec<&str> = log.iter().map(|a| a.object.as_str()).collect();
        assert_eq!(objects, ["o2", "o1"], "newest first");

        assert!(s.insert_rollout("web", 1, "{}", t0).await.unwrap());
        assert!(!s.insert_rollout("web", 1, "{\"x\":1}", t0).await.unwrap());
        assert!(s
            .update_rollout("web", 1, 1, "{\"v\":2}", t1)
            .await
            .unwrap());
        assert!(!s
            .update_rollout("web", 1, 1, "{\"v\":3}", t1)
            .await
            .unwrap());
        let r = s.rollout("web", 1).await.unwrap().unwrap();
        assert_eq!((r.rev, r.doc.as_str(), r.updated_at), (2, "{\"v\":2}", t1));
        s.insert_rollout("web", 2, "{}", t1).await.unwrap();
        assert_eq!(s.latest_rollout("web").await.unwrap().unwrap().seq, 2);
        assert!(s.latest_rollout("api").await.unwrap().is_none());

        // The event log is checked on both backends by controller/tests/store_backends.rs.
    }
}
