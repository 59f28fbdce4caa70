//! `slipway status`, `slipway hosts`, `slipway history`, `slipway rollback`, `slipway audit`:
//! reading the fleet and going back.

use super::cells::{age, image};
use super::client::{print_json, table, Client};
use slipway_proto::api::{
    AuditEntry, HostInfo, Phase, ReleaseInfo, RollbackRequest, StaleRelease, StatusRow,
};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this app.
    pub app: Option<String>,
}

/// Table of hosts x release x phase.
pub async fn status(client: &Client, a: StatusArgs) -> anyhow::Result<()> {
    let path = match &a.app {
        Some(app) => format!("/v1/status?app={app}"),
        None => "/v1/status".to_string(),
    };
    let rows: Vec<StatusRow> = client.get(&path).await?;
    if client.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no host has reported yet");
        print_gitops(client, a.app.as_deref()).await;
        return Ok(());
    }
    table(
        &["HOST", "APP", "SEQ", "PHASE", "IMAGE", "UPDATED"],
        rows.into_iter()
            .map(|r| {
                let s = r.status;
                vec![
                    r.host.to_string(),
                    s.app,
                    s.seq.to_string(),
                    phase_cell(&s.phase, s.expired_at.as_deref()),
                    image(&s.image.unwrap_or_default(), client.wide),
                    age(&r.updated_at, client.wide),
                ]
            })
            .collect(),
    );
    print_gitops(client, a.app.as_deref()).await;
    Ok(())
}

/// The GitOps sync under the hosts table: the repository, and each app's outcome with the
/// reason when its files are invalid or its release failed. Silent when GitOps is off.
async fn print_gitops(client: &Client, app: Option<&str>) {
    let Ok(st) = client.get::<crate::gitops::SyncStatus>("/v1/gitops").await else {
        return;
    };
    let at = st
        .commit
        .as_deref()
        .map_or("never synced", |c| &c[..c.len().min(12)]);
    println!("\ngitops: {} {} ({}) at {at}", st.url, st.branch, st.path);
    if let Some(e) = &st.error {
        println!(
            "  repository error ({} in a row, retrying): {e}",
            st.failures
        );
    }
    let rows: Vec<Vec<String>> = st
        .apps
        .into_iter()
        .filter(|s| app.is_none_or(|a| a == s.app))
        .map(|s| {
            vec![
                s.app,
                s.state.to_string(),
                s.seq.map(|n| n.to_string()).unwrap_or_default(),
                s.commit[..s.commit.len().min(12)].to_string(),
                s.error.unwrap_or_default(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["APP", "SYNC", "SEQ", "COMMIT", "ERROR"], rows);
    }
}

pub async fn hosts(client: &Client) -> anyhow::Result<()> {
    let hosts: Vec<HostInfo> = client.get("/v1/hosts").await?;
    if client.json {
        return print_json(&hosts);
    }
    table(
        &[
            "HOST",
            "LABELS",
            "AGENT",
            "STATE",
            "LAST SEEN",
            "SIGNATURES",
        ],
        hosts
            .into_iter()
            .map(|h| {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let state = super::hosts::state_cell(&h);
                vec![
                    h.host.to_string(),
                    labels.join(","),
                    match (h.agent_version, h.skew) {
                        (Some(v), Some(skew)) => format!("{v} ({skew})"),
                        (v, _) => v.unwrap_or_default(),
                    },
                    state,
                    age(&h.last_seen, client.wide),
                    stale_cell(&h.stale),
                ]
            })
            .collect(),
    );
    Ok(())
}

/// `-`, or each release the host reported serving past its signature's expiry.
fn stale_cell(stale: &[StaleRelease]) -> String {
    if stale.is_empty() {
        return "-".into();
    }
    let list: Vec<String> = stale
        .iter()
        .map(|s| format!("{} seq {} expired {}", s.app, s.seq, s.expired_at))
        .collect();
    format!("stale: {}", list.join("; "))
}

/// A reported phase, marked stale when the host serves the release past its expiry.
pub(crate) fn phase_cell(phase: &Phase, expired_at: Option<&str>) -> String {
    match expired_at {
        Some(t) => format!("{phase} (stale: signature expired {t})"),
        None => phase.to_string(),
    }
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// App name.
    pub app: String,
}

pub async fn history(client: &Client, a: HistoryArgs) -> anyhow::Result<()> {
    let rels: Vec<ReleaseInfo> = client.get(&format!("/v1/apps/{}/releases", a.app)).await?;
    if client.json {
        return print_json(&rels);
    }
    table(
        &["SEQ", "IMAGE", "REQUESTED", "BY", "CREATED", "EXPIRES"],
        rels.into_iter()
            .rev()
            .map(|r| {
                vec![
                    r.seq.to_string(),
                    image(&r.image, client.wide),
                    image(&r.requested, client.wide),
                    r.created_by,
                    age(&r.created_at, client.wide),
                    age(&r.expires, client.wide),
                ]
            })
            .collect(),
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// App name.
    pub app: String,
    /// Release seq to go back to [default: the newest earlier release with a different image].
    #[arg(long = "to", visible_alias = "to-seq", value_name = "SEQ")]
    pub to: Option<u64>,
    /// Send it to every host at once (one wave, no canary, no pause) instead of through the
    /// app's waves.
    #[arg(long)]
    pub now: bool,
}

pub async fn rollback(client: &Client, a: RollbackArgs) -> anyhow::Result<()> {
    let r: ReleaseInfo = client
        .post(
            &format!("/v1/apps/{}/rollback", a.app),
            &RollbackRequest {
                to_seq: a.to,
                now: a.now,
            },
        )
        .await?;
    if client.json {
        return print_json(&r);
    }
    println!(
        "released {} seq {}: {} (rollback to seq {})",
        r.app,
        r.seq,
        r.image,
        r.rollback_of.unwrap_or_default()
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Newest entries to show.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only entries about this app: its spec, releases, rollouts and hosts' actions on it.
    #[arg(long)]
    pub app: Option<String>,
    /// Only entries by this token name (`controller`, `gitops`: the controller itself).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only entries this recent (`2h`, `7d`) or since a time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
}

pub async fn audit(client: &Client, a: AuditArgs) -> anyhow::Result<()> {
    let limit = a.limit.to_string();
    let query: Vec<(&str, &str)> = [
        ("limit", Some(&limit)),
        ("app", a.app.as_ref()),
        ("actor", a.actor.as_ref()),
        ("since", a.since.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v.as_str())))
    .collect();
    let query = anyhow::Context::context(
        serde_urlencoded::to_string(query),
        "encoding the audit query",
    )?;
    let rows: Vec<AuditEntry> = client.get(&format!("/v1/audit?{query}")).await?;
    if client.json {
        return print_json(&rows);
    }
    table(
        &["AT", "ACTOR", "ACTION", "OBJECT", "DETAIL"],
        rows.into_iter()
            .map(|e| {
                vec![
                    age(&e.at, client.wide),
                    e.actor,
                    e.action,
                    e.object,
                    e.detail,
                ]
            })
            .collect(),
    );
    Ok(())
}
