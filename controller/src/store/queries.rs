//! The SQL both backends run, written once. Parameters are numbered (`$1`, `$2`, ...):
//! PostgreSQL's own syntax, and one SQLite accepts too (sqlx binds SQLite's `$N` by its
//! number, so a parameter may appear twice). What differs per database lives in the backend
//! file, with the reason.

/// The newest version of one app's spec.
pub const APP: &str = "SELECT name, version, spec, created_at FROM app_specs WHERE name = $1 \
     ORDER BY version DESC LIMIT 1";
/// The newest version of every app's spec, by name.
pub const APPS: &str = "SELECT a.name, a.version, a.spec, a.created_at FROM app_specs a \
     WHERE a.version = (SELECT MAX(version) FROM app_specs WHERE name = a.name) \
     ORDER BY a.name";
pub const INSERT_APP: &str =
    "INSERT INTO app_specs (name, version, spec, created_at) VALUES ($1, $2, $3, $4)";

pub const LATEST_SEQ: &str = "SELECT MAX(seq) FROM releases WHERE app = $1";
pub const INSERT_RELEASE: &str = "INSERT INTO releases (app, seq, image, requested, \
     spec_version, rollback_of, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const INSERT_SIGNATURE: &str =
    "INSERT INTO signatures (app, seq, envelope, expires, signed_at) VALUES ($1, $2, $3, $4, $5)";

/// Each release joined with its newest signature; the queries below add their conditions.
macro_rules! select_releases {
    ($($tail:literal),*) => {
        concat!(
            "SELECT r.app, r.seq, r.image, r.requested, r.spec_version, r.rollback_of, \
             r.created_by, r.created_at, s.envelope, s.expires \
             FROM releases r JOIN signatures s ON s.id = \
             (SELECT MAX(id) FROM signatures WHERE app = r.app AND seq = r.seq) "
            $(, $tail)*
        )
    };
}
pub const RELEASE: &str = select_releases!("WHERE r.app = $1 AND r.seq = $2");
/// All releases of an app, oldest first.
pub const RELEASES: &str = select_releases!("WHERE r.app = $1 ORDER BY r.seq");
/// The newest release of every app, by name.
pub const LATEST_RELEASES: &str = select_releases!(
    "WHERE r.seq = (SELECT MAX(seq) FROM releases WHERE app = r.app) ORDER BY r.app"
);

/// Registers a host, or refreshes the labels and version of one that registers again.
pub const REGISTER_HOST: &str = "INSERT INTO hosts (host, labels, agent_version, \
     registered_at, last_seen) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (host) DO UPDATE SET \
     labels = CASE WHEN hosts.labels_managed = 0 THEN excluded.labels ELSE hosts.labels END, \
     agent_version = excluded.agent_version, last_seen = excluded.last_seen, down_at = NULL";
pub const HELD_HOSTS: &str =
    "SELECT host, lifecycle FROM hosts WHERE lifecycle <> 'active' ORDER BY host";
/// `$1` = lifecycle, `$2` = host.
pub const SET_HOST_LIFECYCLE: &str = "UPDATE hosts SET lifecycle = $1 WHERE host = $2";
/// `$1` = when, `$2` = host; only a host not marked yet.
pub const MARK_HOST_DOWN: &str =
    "UPDATE hosts SET down_at = $1 WHERE host = $2 AND down_at IS NULL";
/// `$1` = labels (JSON), `$2` = host.
pub const SET_HOST_LABELS: &str =
    "UPDATE hosts SET labels = $1, labels_managed = 1 WHERE host = $2";
/// A removed host's agent tokens, deleted with it.
pub const HOST_TOKENS: &str =
    "SELECT name FROM tokens WHERE role = 'agent' AND host = $1 ORDER BY name";
pub const DELETE_HOST_TOKENS: &str = "DELETE FROM tokens WHERE role = 'agent' AND host = $1";
pub const DELETE_HOST_STATUS: &str = "DELETE FROM host_status WHERE host = $1";
pub const DELETE_HOST_SECRET_KEY: &str = "DELETE FROM host_secret_keys WHERE host = $1";
pub const DELETE_HOST: &str = "DELETE FROM hosts WHERE host = $1";
pub const HOST: &str = "SELECT * FROM hosts WHERE host = $1";
pub const HOSTS: &str = "SELECT * FROM hosts ORDER BY host";

/// A host's newest report per app replaces the one before.
pub const PUT_STATUS: &str = "INSERT INTO host_status (host, app, seq, image, phase, \
     updated_at, expired_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (host, app) \
     DO UPDATE SET seq = excluded.seq, image = excluded.image, phase = excluded.phase, \
     updated_at = excluded.updated_at, expired_at = excluded.expired_at";
/// Every report, kept as history.
pub const INSERT_STATUS_EVENT: &str =
    "INSERT INTO status_events (host, app, seq, phase, at) VALUES ($1, $2, $3, $4, $5)";
/// The newest reports of one app (`$1`), or of all when `$1` is NULL. (The CAST gives
/// PostgreSQL the parameter's type, which `IS NULL` alone does not.)
pub const STATUSES: &str = "SELECT * FROM host_status \
     WHERE (CAST($1 AS TEXT) IS NULL OR app = $1) ORDER BY app, host";

pub const INSERT_TOKEN: &str =
    "INSERT INTO tokens (name, role, host, hash, created_at) VALUES ($1, $2, $3, $4, $5)";
pub const TOKEN_BY_HASH: &str = "SELECT * FROM tokens WHERE hash = $1";
pub const TOKENS: &str = "SELECT * FROM tokens ORDER BY name";
pub const REVOKE_TOKEN: &str = "DELETE FROM tokens WHERE name = $1";

pub const INSERT_JOIN_TOKEN: &str = "INSERT INTO join_tokens (name, hash, labels, uses, used, \
     expires_at, created_by, created_at) VALUES ($1, $2, $3, $4, 0, $5, $6, $7)";
pub const JOIN_TOKEN_BY_HASH: &str = "SELECT * FROM join_tokens WHERE hash = $1";
pub const JOIN_TOKENS: &str = "SELECT * FROM join_tokens ORDER BY name";
pub const REVOKE_JOIN_TOKEN: &str = "DELETE FROM join_tokens WHERE name = $1";
/// One use of join token `$1`, unless it expired by `$2` (unix ms) or is used up.
pub const USE_JOIN_TOKEN: &str = "UPDATE join_tokens SET used = used + 1 \
     WHERE name = $1 AND used < uses AND expires_at > $2";
/// A host that joined: its labels are the join token's, kept from the agent.
pub const JOIN_HOST: &str = "INSERT INTO hosts (host, labels, agent_version, registered_at, \
     last_seen, labels_managed) VALUES ($1, $2, $3, $4, $4, 1)";

pub const AUDIT: &str =
    "INSERT INTO audit (at, actor, action, object, detail) VALUES ($1, $2, $3, $4, $5)";
/// Newest first; `$2` actor, `$3` app (NULL: any), `$4` earliest time. App names have no
/// LIKE wildcards (`[a-z0-9-]`).
pub const AUDIT_LOG: &str = "SELECT * FROM audit \
     WHERE (CAST($2 AS TEXT) IS NULL OR actor = $2) \
     AND (CAST($3 AS TEXT) IS NULL OR object = 'app/' || $3 \
          OR object LIKE 'release/' || $3 || '/%' OR object LIKE 'rollout/' || $3 || '/%' \
          OR object LIKE 'host/%/' || $3) \
     AND at >= $4 ORDER BY id DESC LIMIT $1";

/// Stores revision 1 of a rollout unless the release has one.
pub const INSERT_ROLLOUT: &str = "INSERT INTO rollouts (app, seq, rev, doc, updated_at) \
     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (app, seq) DO NOTHING";
pub const ROLLOUT: &str = "SELECT * FROM rollouts WHERE app = $1 AND seq = $2";
pub const LATEST_ROLLOUT: &str = "SELECT * FROM rollouts WHERE app = $1 ORDER BY seq DESC LIMIT 1";
/// Compare-and-set: replaces the document only while its revision is still `$5`.
pub const UPDATE_ROLLOUT: &str = "UPDATE rollouts SET rev = rev + 1, doc = $1, updated_at = $2 \
     WHERE app = $3 AND seq = $4 AND rev = $5";

/// Appends an event; answers its id.
pub const INSERT_EVENT: &str =
    "INSERT INTO events (at, kind, app, detail) VALUES ($1, $2, $3, $4) RETURNING id";
/// Events after id `$1`, of app `$2` (all when NULL), oldest first, at most `$3`.
pub const EVENTS_SINCE: &str = "SELECT * FROM events WHERE id > $1 \
     AND (CAST($2 AS TEXT) IS NULL OR app = $2) ORDER BY id LIMIT $3";
/// Retention: drops events older than `$1` and all but the newest `$2`.
pub const PRUNE_EVENTS: &str = "DELETE FROM events WHERE at < $1 \
     OR id <= (SELECT MAX(id) FROM events) - $2";
