//! `slipway rollout <app>`: the plan of the newest release, each host's phase, and why it
//! halted; `slipway rollout promote|pause|resume|abort <app>` steers it.

use super::client::{print_json, table, Client};
use super::status::phase_cell;
use anyhow::Context;
use slipway_proto::api::RolloutInfo;

/// `slipway rollout`: show (`<APP>`) or steer (`promote|pause|resume|abort <APP>`).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// App whose rollout to show: waves, each host's desired seq and reported phase, failures
    /// and the reason it halted or waits.
    #[arg(required = true)]
    pub app: Option<String>,
    /// Follow the current rollout until it is live everywhere (exit 0), halts or is rolled
    /// back (exit 2), or `--timeout` passes (exit 3).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub timeout: super::watch::TimeoutArg,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Start the next wave now: past the manual-promotion gate after the canary, or past a pause.
    Promote { app: String },
    /// Start no further wave; hosts already in a wave carry on.
    Pause { app: String },
    /// Continue a paused rollout.
    Resume { app: String },
    /// Halt, and roll the hosts that got the release back to the last good release.
    Abort { app: String },
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<()> {
    let info: RolloutInfo = match (a.action, a.app) {
        (Some(action), _) => {
            let (name, app) = match action {
                Action::Promote { app } => ("promote", app),
                Action::Pause { app } => ("pause", app),
                Action::Resume { app } => ("resume", app),
                Action::Abort { app } => ("abort", app),
            };
            client
                .post(
                    &format!("/v1/apps/{app}/rollout/{name}"),
                    &serde_json::json!({}),
                )
                .await
                .with_context(|| format!("rollout {name} {app}"))?
        }
        (None, Some(app)) if a.watch => {
            return super::watch::follow(client, &app, None, a.timeout.get()).await
        }
        (None, Some(app)) => client
            .get(&format!("/v1/apps/{app}/rollout"))
            .await
            .with_context(|| format!("reading the rollout of {app}"))?,
        (None, None) => {
            anyhow::bail!("usage: slipway rollout <APP> | promote|pause|resume|abort <APP>")
        }
    };
    if client.json {
        return print_json(&info);
    }
    println!(
        "{} seq {} ({}): {}, wave {}/{}, failures {}/{}",
        info.app,
        info.seq,
        info.kind,
        info.state,
        info.started,
        info.waves.len(),
        info.failures,
        if info.max_failures == u32::MAX {
            "-".to_string()
        } else {
            info.max_failures.to_string()
        }
    );
    if let Some(r) = &info.reason {
        println!("reason: {r}");
    }
    // Only while some wave has not started: once every wave has, no host is outside them.
    if let Some(s) = info.stable_seq.filter(|_| info.started < info.waves.len()) {
        println!("hosts outside started waves keep seq {s}");
    }
    if let Some(s) = info.rollback_seq {
        println!("rolled back as seq {s}");
    }
    if !info.left_out.is_empty() {
        let list: Vec<String> = info
            .left_out
            .iter()
            .map(|(h, why)| format!("{h} ({why})"))
            .collect();
        println!("left out (no failure): {}", list.join(", "));
    }
    let rows = info
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.wave.to_string(),
                h.host.clone(),
                h.desired_seq.map_or("-".into(), |s| s.to_string()),
                h.reported_seq.map_or("-".into(), |s| s.to_string()),
                h.phase
                    .as_ref()
                    .map_or("-".into(), |p| phase_cell(p, h.expired_at.as_deref())),
                h.failed.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["WAVE", "HOST", "DESIRED", "REPORTED", "PHASE", "FAILED"],
        rows,
    );
    Ok(())
}
