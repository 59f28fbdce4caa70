//! The controller's state: app specs (versioned), releases (append-only), their signatures,
//! hosts, status reports, tokens (hashed) and the audit log. One trait, one backend per
//! database: SQLite embedded by default; PostgreSQL drops in beside it.
//!
//! Both backends share the tables, so each row is mapped once (`rows`), each query written
//! once (`queries`) and each method that runs the same SQL implemented once (`methods`);
//! `sqlite` and `postgres` hold only what differs, with the reason.

mod methods;
#[macro_use]
mod secrets;
mod postgres;
mod queries;
mod rows;
mod sqlite;

pub use postgres::PostgresStore;
pub use secrets::{SecretRecord, SecretStore};
pub use sqlite::SqliteStore;

pub(crate) use rows::to_ms;

use slipway_proto::api::{HostLifecycle, HostStatus, Phase, Role};
use slipway_proto::AppSpec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("release {app} seq {seq} already exists")]
    SeqTaken { app: String, seq: u64 },
    #[error("token `{0}` already exists")]
    TokenExists(String),
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One version of an app spec.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub name: String,
    pub version: u64,
    pub spec: AppSpec,
    pub updated_at: SystemTime,
}

/// A release: what was stored once and is never modified afterwards, with its newest
/// signature. [`Store::insert_release`] stores the first signature with the release.
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    pub app: String,
    pub seq: u64,
    /// `repository@sha256:...`
    pub image: String,
    /// What the operator asked for (a tag, or `rollback to seq N`).
    pub requested: String,
    pub spec_version: u64,
    pub rollback_of: Option<u64>,
    pub created_by: String,
    pub created_at: SystemTime,
    /// The newest signed envelope (JSON) and its expiry.
    pub envelope: String,
    pub expires: SystemTime,
}

#[derive(Debug, Clone)]
pub struct HostRecord {
    pub host: String,
    pub labels: BTreeMap<String, String>,
    pub agent_version: Option<String>,
    pub registered_at: SystemTime,
    pub last_seen: SystemTime,
    /// What an operator made of it (cordoned, drained).
    pub lifecycle: HostLifecycle,
    /// When the lead marked it down (silent past `host_down_after`); `None` once heard from.
    pub down_at: Option<SystemTime>,
    /// Its labels were set by a join token or an admin: the agent may not change them.
    pub labels_managed: bool,
}

#[derive(Debug, Clone)]
pub struct StatusRecord {
    pub host: String,
    pub app: String,
    pub seq: u64,
    pub image: Option<String>,
    pub phase: Phase,
    pub updated_at: SystemTime,
    /// Expiry of the release's signature, set while the host serves it past that (stale).
    pub expired_at: Option<SystemTime>,
}

/// A token; only the sha256 of the secret is stored.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub host: Option<String>,
    /// Lowercase hex sha256 of the secret.
    pub hash: String,
    pub created_at: SystemTime,
}

/// A join token; only the sha256 of the secret is stored.
#[derive(Debug, Clone)]
pub struct JoinTokenRecord {
    pub name: String,
    /// Lowercase hex sha256 of the secret.
    pub hash: String,
    /// The labels a host joining with it gets.
    pub labels: BTreeMap<String, String>,
    pub uses: u64,
    pub used: u64,
    pub expires_at: SystemTime,
    pub created_by: String,
    pub created_at: SystemTime,
}

#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: u64,
    pub at: SystemTime,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub detail: String,
}

/// A stored rollout document (`crate::rollout::Rollout` as JSON) with its revision, so
/// concurrent writers (the driving replica, operators on any replica) compare-and-set.
#[derive(Debug, Clone)]
pub struct RolloutRecord {
    pub app: String,
    pub seq: u64,
    pub rev: u64,
    pub doc: String,
    pub updated_at: SystemTime,
}

/// One entry of the event log (`GET /v1/events`): what happened, to which app, when.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// Increasing; `since=` resumes after it.
    pub id: u64,
    /// RFC 3339.
    pub at: String,
    /// `release.created`, `wave.started`, `host.phase`, `rollout.promoted`, `rollout.paused`,
    /// `rollout.halted`, `rollout.done`, `rollout.rolled-back`, `host.joined`, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Kind-specific fields (seq, host, phase, reason, ...).
    pub detail: serde_json::Value,
}

/// Everything the controller keeps. Implementations must make `insert_release` fail with
/// [`StoreError::SeqTaken`] when the seq exists, so concurrent releases get unique seqs.
#[async_trait::async_trait]
pub trait Store: SecretStore + Send + Sync + 'static {
    /// Stores `spec` as a new version when it differs from the current one.
    /// Returns the current record and whether a new version was written.
    async fn apply_app(&self, spec: &AppSpec, now: SystemTime) -> Result<(AppRecord, bool)>;
    async fn app(&self, name: &str) -> Result<Option<AppRecord>>;
    async fn apps(&self) -> Result<Vec<AppRecord>>;

    /// Highest seq of `app`, 0 when it has none.
    async fn latest_seq(&self, app: &str) -> Result<u64>;
    async fn insert_release(&self, release: &ReleaseRecord) -> Result<()>;
    async fn release(&self, app: &str, seq: u64) -> Result<Option<ReleaseRecord>>;
    /// All releases of `app`, oldest first.
    async fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>>;
    /// The newest release of every app.
    async fn latest_releases(&self) -> Result<Vec<ReleaseRecord>>;
    /// Records a fresh signature of an existing release.
    async fn add_signature(
        &self,
        app: &str,
        seq: u64,
        envelope: &str,
        expires: SystemTime,
        now: SystemTime,
    ) -> Result<()>;

    async fn register_host(
        &self,
        host: &str,
        labels: &BTreeMap<String, String>,
        agent_version: Option<&str>,
        now: SystemTime,
    ) -> Result<HostRecord>;
    async fn host(&self, host: &str) -> Result<Option<HostRecord>>;
    async fn hosts(&self) -> Result<Vec<HostRecord>>;
    async fn touch_host(&self, host: &str, now: SystemTime) -> Result<()>;
    /// The hosts an operator cordoned or drained, and which (the view reads this on every
    /// rebuild, so not every host).
    async fn held_hosts(&self) -> Result<Vec<(String, HostLifecycle)>>;
    /// Cordons, drains or reactivates a host; false when no host has that id.
    async fn set_host_lifecycle(&self, host: &str, lifecycle: HostLifecycle) -> Result<bool>;
    /// Marks a host down at `at` unless it already is; true when this call marked it.
    async fn mark_host_down(&self, host: &str, at: SystemTime) -> Result<bool>;
    /// Replaces a host's labels and keeps them from the agent; false when no such host.
    async fn set_host_labels(&self, host: &str, labels: &BTreeMap<String, String>) -> Result<bool>;
    /// Forgets a host: its row, its status reports, its secret-key registration and its
    /// agent tokens (answered by name), in one transaction. `None` when no such host.
    async fn remove_host(&self, host: &str) -> Result<Option<Vec<String>>>;
    async fn put_status(&self, host: &str, status: &HostStatus, now: SystemTime) -> Result<()>;
    async fn statuses(&self, app: Option<&str>) -> Result<Vec<StatusRecord>>;

    async fn create_token(&self, token: &TokenRecord) -> Result<()>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Returns false when no token has that name.
    async fn revoke_token(&self, name: &str) -> Result<bool>;

    async fn create_join_token(&self, token: &JoinTokenRecord) -> Result<()>;
    async fn join_token_by_hash(&self, hash: &str) -> Result<Option<JoinTokenRecord>>;
    async fn join_tokens(&self) -> Result<Vec<JoinTokenRecord>>;
    /// Returns false when no join token has that name.
    async fn revoke_join_token(&self, name: &str) -> Result<bool>;
    /// Uses join token `join` once (unless it expired by `now` or is used up) to register
    /// `host` with `labels` (kept from the agent) and store its agent token, in one
    /// transaction; false when the join token could not be used (nothing changed).
    async fn join_host(
        &self,
        join: &str,
        host: &str,
        labels: &BTreeMap<String, String>,
        agent_version: Option<&str>,
        agent_token: &TokenRecord,
        now: SystemTime,
    ) -> Result<bool>;

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        object: &str,
        detail: &str,
        now: SystemTime,
    ) -> Result<()>;
    /// Newest first, at most `limit`.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        self.audit_find(&AuditFilter::default(), limit).await
    }
    /// The entries `filter` selects, newest first, at most `limit`.
    async fn audit_find(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>>;

    /// Stores the rollout of a release unless one exists; returns whether this call stored it.
    async fn insert_rollout(&self, app: &str, seq: u64, doc: &str, now: SystemTime)
        -> Result<bool>;
    async fn rollout(&self, app: &str, seq: u64) -> Result<Option<RolloutRecord>>;
    /// The rollout of the highest seq of `app` that has one.
    async fn latest_rollout(&self, app: &str) -> Result<Option<RolloutRecord>>;
    /// Replaces the document when its revision is still `rev`; returns false otherwise.
    async fn update_rollout(
        &self,
        app: &str,
        seq: u64,
        rev: u64,
        doc: &str,
        now: SystemTime,
    ) -> Result<bool>;

    /// Appends an event to the log; answers it with its id.
    async fn add_event(
        &self,
        kind: &str,
        app: Option<&str>,
        detail: &serde_json::Value,
        now: SystemTime,
    ) -> Result<EventRecord>;
    /// Events after id `since` (of `app` only, when given), oldest first, at most `limit`.
    async fn events_since(
        &self,
        since: u64,
        app: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EventRecord>>;
    /// Drops events older than `before` and all but the newest `keep`; answers how many.
    async fn prune_events(&self, before: SystemTime, keep: u64) -> Result<u64>;

    /// Whether this replica drives rollouts now (and keeps doing so while it lives). A store
    /// that only one controller can open always says yes.
    async fn try_lead(&self) -> Result<bool> {
        Ok(true)
    }
    /// Tells every other replica that something changed (releases, signatures, rollouts).
    async fn notify_changed(&self) -> Result<()> {
        Ok(())
    }
    /// Ticks whenever another replica said something changed; `None` when there are none.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Which audit entries to read (`GET /v1/audit?app=&actor=&since=`); empty: all.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries about this app: its spec, releases, rollouts and hosts' actions on it.
    pub app: Option<String>,
    /// Entries made by this token name (`controller` and `gitops` for the controller's own).
    pub actor: Option<String>,
    /// Entries at or after this time.
    pub since: Option<SystemTime>,
}

/// Opens the store a database URL names: `sqlite://PATH` (created when missing), or
/// `postgres://USER[:PASS]@HOST[:PORT]/DB` (shared by several controllers).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Open {
            url: postgres::redact(url),
            source: sqlx::Error::Configuration(
                "unsupported database URL: expected sqlite://PATH or postgres://...".into(),
            ),
        })
    }
}

/// Whether `e` is a unique-constraint violation (a seq or token name taken), on either
/// database.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// An insert's outcome, with a duplicate key reported as `taken()` (the record already
/// exists) and every other database error as is.
fn unique<T>(
    r: std::result::Result<T, sqlx::Error>,
    taken: impl FnOnce() -> StoreError,
) -> Result<T> {
    match r {
        Err(e) if is_unique_violation(&e) => Err(taken()),
        other => other.map_err(Into::into),
    }
}

/// The migrator of a backend's embedded migrations (version, description, SQL), applied in
/// order.
fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    Migrator {
        migrations: Cow::Owned(
            migrations
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
    }
}
