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

use super::methods::impl_store;
use super::{Result, StoreError};
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Row, Transaction};
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
    (
        4,
        "events",
        include_str!("../../migrations/postgres/0004_events.sql"),
    ),
    (
        5,
        "secrets",
        include_str!("../../migrations/postgres/0005_secrets.sql"),
    ),
    (
        6,
        "hosts lifecycle",
        include_str!("../../migrations/postgres/0006_hosts_lifecycle.sql"),
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
        super::migrator(MIGRATIONS).run(&pool).await?;
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

// What differs from SQLite, used by the shared methods (see `methods/`).
impl PostgresStore {
    /// Several replicas report the same host, each on its own clock: `last_seen` never moves
    /// back because a replica's clock is behind.
    const TOUCH_HOST: &'static str =
        "UPDATE hosts SET last_seen = GREATEST(last_seen, $1), down_at = NULL WHERE host = $2";

    /// One writer per app name at a time, so two replicas never race for a spec version
    /// (PostgreSQL's transactions do not keep other writers out the way SQLite's do).
    async fn lock_app(tx: &mut Transaction<'_, Postgres>, app: &str) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("app/{app}"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// A plain transaction: writers do not block each other, and the unique keys (a seq, a
    /// token name) settle any race.
    async fn begin_write(&self) -> sqlx::Result<Transaction<'_, Postgres>> {
        self.pool.begin().await
    }
}

impl_secret_store!(PostgresStore);
impl_store!(PostgresStore {
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
});

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
