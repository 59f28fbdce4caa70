//! `slipway`: the operator CLI. One file per subcommand group under `slipway_controller::cli`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use slipway_controller::cli::{self, client::Client, client::ConnectArgs};

/// Slipway operator CLI. Offline: keys, trust files, signing releases by hand. Online: apps,
/// releases, rollbacks, fleet status and tokens on a controller (URL and token from --url /
/// --token, SLIPWAY_URL / SLIPWAY_TOKEN, or ~/.config/slipway/cli.toml).
#[derive(Parser)]
#[command(name = "slipway", version)]
struct Cli {
    /// Log as JSON lines (also `SLIPWAY_LOG_FORMAT=json`); filter with `SLIPWAY_LOG`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 release-signing key pair (offline).
    Keygen(cli::keygen::Args),
    /// Manage trust files: which keys agents accept (offline).
    #[command(subcommand)]
    Trust(cli::trust::Command),
    /// Release an app: `slipway release <APP> --image REF` on the controller, or
    /// `slipway release sign ...` offline.
    Release(cli::release::Args),
    /// App specs on the controller: apply, list, show.
    #[command(subcommand)]
    App(cli::app::Command),
    /// Show a rollout (waves, host phases, why it halted) or steer it:
    /// `slipway rollout <APP>`, `slipway rollout promote|pause|resume|abort <APP>`.
    Rollout(cli::rollout::Args),
    /// Make a new release of an older release's image (a higher seq).
    Rollback(cli::status::RollbackArgs),
    /// Which host runs which release, in which phase.
    Status(cli::status::StatusArgs),
    /// Registered hosts (labels, agent version, state: active, cordoned, drained, down), or
    /// `slipway hosts cordon|uncordon|drain|remove HOST`.
    Hosts(cli::hosts::Args),
    /// Releases of an app, newest first.
    History(cli::status::HistoryArgs),
    /// Operator and agent tokens (admin only).
    #[command(subcommand)]
    Token(cli::token::Command),
    /// Who changed what, and when.
    Audit(cli::status::AuditArgs),
    /// The event log: releases, waves, host phases, halts, rollbacks; `-f` follows it live.
    Events(cli::events::Args),
    /// Output of an app's containers on every host that runs it, through the controller (no
    /// SSH): `slipway logs web [--host H] [-f] [--since 10m] [--tail 100]`.
    Logs(cli::logs::Args),
    /// Secrets of an app: set (from stdin or a file), list (never values), rm.
    #[command(subcommand)]
    Secret(cli::secret::Command),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    slipway_telemetry::init(cli.log_json);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(n) = e.downcast_ref::<cli::watch::NotLive>() {
                return std::process::ExitCode::from(n.code);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let connect = || Client::from_args(&cli.connect);
    match cli.command {
        Command::Keygen(a) => cli::keygen::run(a),
        Command::Trust(c) => cli::trust::run(c),
        Command::Release(a) => match a.offline {
            Some(c) => cli::release::run(c).await,
            None => cli::release::run_online(&connect()?, a).await,
        },
        Command::App(c) => cli::app::run(&connect()?, c).await,
        Command::Rollout(a) => cli::rollout::run(&connect()?, a).await,
        Command::Rollback(a) => cli::status::rollback(&connect()?, a).await,
        Command::Status(a) => cli::status::status(&connect()?, a).await,
        Command::Hosts(a) => cli::hosts::run(&connect()?, a).await,
        Command::History(a) => cli::status::history(&connect()?, a).await,
        Command::Token(c) => cli::token::run(&connect()?, c).await,
        Command::Audit(a) => cli::status::audit(&connect()?, a).await,
        Command::Events(a) => cli::events::run(&connect()?, a).await,
        Command::Secret(c) => cli::secret::run(&connect()?, c).await,
        Command::Logs(a) => cli::logs::run(&connect()?, a).await,
    }
}

/// `slipway rollout web | head`: once the reader is gone, printing fails with EPIPE; end as a
/// program killed by SIGPIPE would (status 141), without a panic message.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
