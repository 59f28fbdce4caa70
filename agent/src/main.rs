//! `slipway-agent`: the host agent and its data plane. One file per subcommand under `cmd/`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod cmd;

/// jemalloc: the proxy allocates and frees per request (headers, stream state, buffers), and
/// jemalloc's per-thread caches serve that with less work than glibc's malloc.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Slipway host agent: verifies signed releases, pulls images by digest, runs containers with
/// runc and swaps traffic blue-green through `slipway-agent proxy`.
#[derive(Parser)]
#[command(name = "slipway-agent", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines (also `SLIPWAY_LOG_FORMAT=json`); filter with `SLIPWAY_LOG`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a signed release file against a trust file; prints app, seq and image.
    Verify(cmd::verify::Args),
    /// Pull an image by digest into a store and unpack its layers.
    Pull(cmd::pull::Args),
    /// List the containers this agent runs.
    Ps(cmd::ps::Args),
    /// Show a container's output.
    Logs(cmd::logs::Args),
    /// Run the data plane: public listeners, atomic upstream swap, verified drain.
    Proxy(Box<cmd::proxy::Args>),
    /// Run the agent: deploy the signed releases of the release directory blue-green.
    Run(cmd::run::Args),
    /// Show each app's live release, phase, last error and recent deploys.
    Status(cmd::status::Args),
    /// Named volumes: `volume ls`, `volume rm NAME`.
    Volume(cmd::volume::Args),
    /// Join a controller with a join token: register this host, store its own agent token
    /// (0600), write the trust file (the release key checked against the token) and
    /// agent.toml's `[controller]`; `--start` runs the agent.
    Join(cmd::join::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    slipway_telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Verify(a) => cmd::verify::run(a),
        Command::Pull(a) => cmd::pull::run(a).await,
        Command::Ps(a) => cmd::ps::run(a).await,
        Command::Logs(a) => cmd::logs::run(a).await,
        Command::Proxy(a) => cmd::proxy::run(*a).await,
        Command::Run(a) => cmd::run::run(a).await,
        Command::Status(a) => cmd::status::run(a).await,
        Command::Volume(a) => cmd::volume::run(a).await,
        Command::Join(a) => cmd::join::run(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
