//! `slipway`: the operator CLI. One file per subcommand group under `slipway_controller::cli`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use slipway_controller::cli;

/// Slipway operator CLI: keys, trust files, signed releases.
#[derive(Parser)]
#[command(name = "slipway", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines (also `SLIPWAY_LOG_FORMAT=json`); filter with `SLIPWAY_LOG`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 release-signing key pair.
    Keygen(cli::keygen::Args),
    /// Manage trust files (which keys agents accept).
    #[command(subcommand)]
    Trust(cli::trust::Command),
    /// Sign releases offline.
    #[command(subcommand)]
    Release(cli::release::Command),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    slipway_telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Keygen(a) => cli::keygen::run(a),
        Command::Trust(c) => cli::trust::run(c),
        Command::Release(c) => cli::release::run(c).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
