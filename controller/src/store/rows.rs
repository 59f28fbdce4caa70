//! Rows as both databases return them, and how each becomes a record. The tables are the
//! same on SQLite and PostgreSQL (integers are 64-bit, times unix milliseconds, documents
//! JSON text), so one `FromRow` struct per table serves both backends.

use super::{
    AppRecord, AuditRecord, EventRecord, HostRecord, JoinTokenRecord, ReleaseRecord, RolloutRecord,
    StatusRecord, StoreError, TokenRecord,
};
use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch, as stored.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored time; a negative one (never written by us) reads as the epoch.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn corrupt(what: String, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

/// A row of `app_specs`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AppRow {
    name: String,
    version: i64,
    /// `AppSpec` as JSON.
    spec: String,
    created_at: i64,
}

impl TryFrom<AppRow> for AppRecord {
    type Error = StoreError;
    fn try_from(r: AppRow) -> Result<Self, StoreError> {
        Ok(AppRecord {
            spec: serde_json::from_str(&r.spec)
                .map_err(|e| corrupt(format!("app spec {}", r.name), e))?,
            version: r.version as u64,
            updated_at: from_ms(r.created_at),
            name: r.name,
        })
    }
}

/// A row of `releases` joined with its newest row of `signatures`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ReleaseRow {
    app: String,
    seq: i64,
    image: String,
    requested: String,
    spec_version: i64,
    rollback_of: Option<i64>,
    created_by: String,
    created_at: i64,
    envelope: String,
    expires: i64,
}

impl TryFrom<ReleaseRow> for ReleaseRecord {
    type Error = StoreError;
    fn try_from(r: ReleaseRow) -> Result<Self, StoreError> {
        Ok(ReleaseRecord {
            app: r.app,
            seq: r.seq as u64,
            image: r.image,
            requested: r.requested,
            spec_version: r.spec_version as u64,
            rollback_of: r.rollback_of.map(|s| s as u64),
            created_by: r.created_by,
            created_at: from_ms(r.created_at),
            envelope: r.envelope,
            expires: from_ms(r.expires),
        })
    }
}

/// A row of `hosts`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct HostRow {
    host: String,
    /// Labels as a JSON object.
    labels: String,
    agent_version: Option<String>,
    registered_at: i64,
    last_seen: i64,
    lifecycle: String,
    down_at: Option<i64>,
    labels_managed: i64,
}

impl TryFrom<HostRow> for HostRecord {
    type Error = StoreError;
    fn try_from(r: HostRow) -> Result<Self, StoreError> {
        Ok(HostRecord {
            labels: serde_json::from_str(&r.labels)
                .map_err(|e| corrupt(format!("labels of host {}", r.host), e))?,
            agent_version: r.agent_version,
            registered_at: from_ms(r.registered_at),
            last_seen: from_ms(r.last_seen),
            lifecycle: r
                .lifecycle
                .parse()
                .map_err(|e| corrupt(format!("lifecycle of host {}", r.host), e))?,
            down_at: r.down_at.map(from_ms),
            labels_managed: r.labels_managed != 0,
            host: r.host,
        })
    }
}

/// A row of `join_tokens`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct JoinTokenRow {
    name: String,
    hash: String,
    labels: String,
    uses: i64,
    used: i64,
    expires_at: i64,
    created_by: String,
    created_at: i64,
}

impl TryFrom<JoinTokenRow> for JoinTokenRecord {
    type Error = StoreError;
    fn try_from(r: JoinTokenRow) -> Result<Self, StoreError> {
        Ok(JoinTokenRecord {
            labels: serde_json::from_str(&r.labels)
                .map_err(|e| corrupt(format!("labels of join token {}", r.name), e))?,
            name: r.name,
            hash: r.hash,
            uses: r.uses.max(0) as u64,
            used: r.used.max(0) as u64,
            expires_at: from_ms(r.expires_at),
            created_by: r.created_by,
            created_at: from_ms(r.created_at),
        })
    }
}

/// A row of `host_status`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct StatusRow {
    host: String,
    app: String,
    seq: i64,
    image: Option<String>,
    /// `Phase` as JSON.
    phase: String,
    updated_at: i64,
    /// RFC 3339, as the agent reported it and the API checked.
    expired_at: Option<String>,
}

impl TryFrom<StatusRow> for StatusRecord {
    type Error = StoreError;
    fn try_from(r: StatusRow) -> Result<Self, StoreError> {
        let what = || format!("status of host {}", r.host);
        let expired_at = r
            .expired_at
            .as_deref()
            .map(|t| {
                humantime::parse_rfc3339_weak(t)
                    .map_err(|e| corrupt(what(), format!("expired_at `{t}`: {e}")))
            })
            .transpose()?;
        Ok(StatusRecord {
            phase: serde_json::from_str(&r.phase).map_err(|e| corrupt(what(), e))?,
            app: r.app,
            seq: r.seq as u64,
            image: r.image,
            updated_at: from_ms(r.updated_at),
            expired_at,
            host: r.host,
        })
    }
}

/// A row of `tokens`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct TokenRow {
    name: String,
    /// `admin`, `read-only` or `agent`.
    role: String,
    host: Option<String>,
    hash: String,
    created_at: i64,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            role: r
                .role
                .parse()
                .map_err(|e: slipway_proto::api::UnknownRole| {
                    corrupt(format!("token {}", r.name), e.to_string())
                })?,
            host: r.host,
            hash: r.hash,
            created_at: from_ms(r.created_at),
            name: r.name,
        })
    }
}

/// A row of `audit`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    object: String,
    detail: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            id: r.id as u64,
            at: from_ms(r.at),
            actor: r.actor,
            action: r.action,
            object: r.object,
            detail: r.detail,
        })
    }
}

/// A row of `rollouts`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RolloutRow {
    app: String,
    seq: i64,
    rev: i64,
    /// `rollout::Rollout` as JSON, parsed by the rollout module.
    doc: String,
    updated_at: i64,
}

impl TryFrom<RolloutRow> for RolloutRecord {
    type Error = StoreError;
    fn try_from(r: RolloutRow) -> Result<Self, StoreError> {
        Ok(RolloutRecord {
            app: r.app,
            seq: r.seq as u64,
            rev: r.rev as u64,
            doc: r.doc,
            updated_at: from_ms(r.updated_at),
        })
    }
}

/// Converts the row, when there is one.
pub(super) fn record<R, T>(row: Option<R>) -> Result<Option<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    row.map(T::try_from).transpose()
}

/// Converts every row, failing on the first corrupt one.
pub(super) fn records<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_proto::api::{Phase, Role};

    fn corrupt_of(e: StoreError) -> (String, String) {
        match e {
            StoreError::Corrupt { what, reason } => (what, reason),
            other => panic!("expected a corrupt-row error, got {other}"),
        }
    }

    #[test]
    fn times_are_stored_as_unix_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(to_ms(t), 1_700_000_000_123);
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(from_ms(-5), SystemTime::UNIX_EPOCH);
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(to_ms(before_epoch), 0);
    }

    #[test]
    fn an_app_row_becomes_its_spec_and_a_bad_spec_names_the_app() {
        let spec = slipway_proto::AppSpec::from_toml(
            "name = \"web\"\nimage = \"reg/web\"\nlisten = 8080\ncontainer_port = 80\n",
        )
        .unwrap();
        let row = AppRow {
            name: "web".into(),
            version: 3,
            spec: serde_json::to_string(&spec).unwrap(),
            created_at: 1000,
        };
        let rec = AppRecord::try_from(row).unwrap();
        assert_eq!((rec.name.as_str(), rec.version), ("web", 3));
        assert_eq!(rec.spec, spec);
        assert_eq!(rec.updated_at, from_ms(1000));

        let bad = AppRow {
            name: "web".into(),
            version: 1,
            spec: "{not json".into(),
            created_at: 0,
        };
        let (what, _) = corrupt_of(AppRecord::try_from(bad).unwrap_err());
        assert_eq!(what, "app spec web");
    }

    #[test]
    fn a_release_row_keeps_every_field() {
        let rec = ReleaseRecord::try_from(ReleaseRow {
            app: "web".into(),
            seq: 7,
            image: "reg/web@sha256:ab".into(),
            requested: "reg/web:v7".into(),
            spec_version: 2,
            rollback_of: Some(5),
            created_by: "admin".into(),
            created_at: 10,
            envelope: "{}".into(),
            expires: 20,
        })
        .unwrap();
        assert_eq!((rec.app.as_str(), rec.seq, rec.spec_version), ("web", 7, 2));
        assert_eq!(rec.rollback_of, Some(5));
        assert_eq!((rec.created_at, rec.expires), (from_ms(10), from_ms(20)));
        assert_eq!(
            (rec.image.as_str(), rec.requested.as_str()),
            ("reg/web@sha256:ab", "reg/web:v7")
        );
    }

    #[test]
    fn host_labels_are_json_and_bad_ones_name_the_host() {
        let row = |labels: &str| HostRow {
            host: "h1".into(),
            labels: labels.into(),
            agent_version: Some("0.1.0".into()),
            registered_at: 1,
            last_seen: 2,
            lifecycle: "cordoned".into(),
            down_at: None,
            labels_managed: 0,
        };
        let rec = HostRecord::try_from(row(r#"{"role":"web"}"#)).unwrap();
        assert_eq!(rec.labels.get("role").map(String::as_str), Some("web"));
        assert_eq!(rec.agent_version.as_deref(), Some("0.1.0"));
        assert_eq!(rec.last_seen, from_ms(2));
        let (what, _) = corrupt_of(HostRecord::try_from(row("[1]")).unwrap_err());
        assert_eq!(what, "labels of host h1");
    }

    #[test]
    fn a_status_row_reads_its_phase_and_stale_expiry() {
        let row = |phase: &str, expired_at: Option<&str>| StatusRow {
            host: "h1".into(),
            app: "web".into(),
            seq: 4,
            image: None,
            phase: phase.into(),
            updated_at: 9,
            expired_at: expired_at.map(Into::into),
        };
        let phase = serde_json::to_string(&Phase::HealthChecking).unwrap();
        let rec = StatusRecord::try_from(row(&phase, Some("2026-01-02T03:04:05Z"))).unwrap();
        assert_eq!(rec.phase, Phase::HealthChecking);
        assert_eq!(
            rec.expired_at,
            Some(humantime::parse_rfc3339("2026-01-02T03:04:05Z").unwrap())
        );
        assert_eq!(
            StatusRecord::try_from(row(&phase, None))
                .unwrap()
                .expired_at,
            None
        );

        let (what, reason) =
            corrupt_of(StatusRecord::try_from(row(&phase, Some("yesterday"))).unwrap_err());
        assert_eq!(what, "status of host h1");
        assert!(reason.contains("expired_at `yesterday`"), "{reason}");
        let (what, _) = corrupt_of(StatusRecord::try_from(row("\"nope\"", None)).unwrap_err());
        assert_eq!(what, "status of host h1");
    }

    #[test]
    fn a_token_row_with_an_unknown_role_names_the_token() {
        let row = |role: &str| TokenRow {
            name: "ci".into(),
            role: role.into(),
            host: None,
            hash: "ab".into(),
            created_at: 0,
        };
        assert_eq!(
            TokenRecord::try_from(row("read-only")).unwrap().role,
            Role::ReadOnly
        );
        let (what, reason) = corrupt_of(TokenRecord::try_from(row("root")).unwrap_err());
        assert_eq!(what, "token ci");
        assert!(reason.contains("unknown role `root`"), "{reason}");
    }

    #[test]
    fn records_stop_at_the_first_corrupt_row() {
        let row = |name: &str, role: &str| TokenRow {
            name: name.into(),
            role: role.into(),
            host: None,
            hash: name.into(),
            created_at: 0,
        };
        let ok: Vec<TokenRecord> = records(vec![row("a", "admin"), row("b", "agent")]).unwrap();
        assert_eq!(ok.len(), 2);
        let err = records::<_, TokenRecord>(vec![row("a", "admin"), row("b", "x")]).unwrap_err();
        assert_eq!(corrupt_of(err).0, "token b");
    }
}

/// A row of `events`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    app: Option<String>,
    /// A JSON object.
    detail: String,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(EventRecord {
            detail: serde_json::from_str(&r.detail)
                .map_err(|e| corrupt(format!("event {}", r.id), e))?,
            id: r.id as u64,
            at: humantime::format_rfc3339_millis(from_ms(r.at)).to_string(),
            kind: r.kind,
            app: r.app,
        })
    }
}
