//! `slipway-controller`: the controller daemon, and offline bootstrap of its first token.
// `deny`, not `forbid`: the one exception is jemalloc's options below.
#![deny(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand};
use slipway_controller::config::Config;
use slipway_controller::{auth, server, store};
use slipway_proto::api::Role;
use std::path::PathBuf;

/// Slipway controller: signs digest-pinned releases and serves them to agents over an
/// authenticated HTTP API.
#[derive(Parser)]
#[command(name = "slipway-controller", version)]
struct Cli {
    /// Log as JSON lines (also `SLIPWAY_LOG_FORMAT=json`); filter with `SLIPWAY_LOG`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGINT or SIGTERM, then shut down gracefully.
    Serve {
        /// Controller config (`controller.toml`; see deploy/examples/controller.toml).
        #[arg(long, short, env = "SLIPWAY_CONTROLLER_CONFIG")]
        config: PathBuf,
    },
    /// Create a token directly in the store, without the API: how the first admin token is
    /// made. Prints the secret once on stdout.
    TokenCreate {
        /// Controller config (for the database location).
        #[arg(long, short, env = "SLIPWAY_CONTROLLER_CONFIG")]
        config: PathBuf,
        /// Unique token name; recorded as the actor in the audit log.
        #[arg(long)]
        name: String,
        /// admin (everything), read-only (every read but agents' desired sets) or agent (one host).
        #[arg(long)]
        role: Role,
        /// For agent tokens: the host id the token speaks for.
        #[arg(long)]
        host: Option<String>,
    },
    /// Sealed secrets' master key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every secret version under a new master key and replace the key file.
    /// Stop the controller(s) first.
    RotateKey {
        /// Controller config (for the database and the master key file).
        #[arg(long, short, env = "SLIPWAY_CONTROLLER_CONFIG")]
        config: PathBuf,
    },
}

/// jemalloc: it keeps no header inside a block, so the pages of a connection buffer that are
/// never written stay out of memory (hyper gives every connection an 8 KiB read and an 8 KiB
/// write buffer; a parked long-poll writes a few hundred bytes of each).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it starts: pages freed and not reused are given back
/// to the system within a second (the default, 10 s, kept the garbage of 10,000 agents
/// registering, about 55 MiB, counted as the controller's memory long after), by a
/// background thread of jemalloc's own rather than by the threads serving requests.
/// `_RJEM_MALLOC_CONF` in the environment overrides these.
#[allow(unsafe_code, non_upper_case_globals)] // a symbol jemalloc looks up by name
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    slipway_telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::TokenCreate {
            config,
            name,
            role,
            host,
        } => token_create(config, name, role, host).await,
        Command::Secrets(SecretsCommand::RotateKey { config }) => rotate_key(config).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let cfg = Config::load(&config)?;
    let running = server::start(&cfg)
        .await
        .with_context(|| format!("starting the controller from {}", config.display()))?;
    println!("listening on {}", running.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn token_create(
    config: PathBuf,
    name: String,
    role: Role,
    host: Option<String>,
) -> anyhow::Result<()> {
    let cfg = Config::load(&config)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let store = store::open(&cfg.database_url()).await?;
    let (token, rec) = auth::create_token(store.as_ref(), &name, role, host.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .audit(
            "local-admin",
            "token.create",
            &format!("token/{}", rec.name),
            &format!("role {} (offline)", rec.role),
            std::time::SystemTime::now(),
        )
        .await?;
    println!("{token}");
    Ok(())
}

async fn rotate_key(config: PathBuf) -> anyhow::Result<()> {
    let cfg = Config::load(&config)?;
    let store = store::open(&cfg.database_url()).await?;
    let path = cfg.secrets_master_key_path();
    let n = slipway_controller::secrets::rotate_master_key(store.as_ref(), &path).await?;
    println!(
        "master key {} rotated: {n} secret versions re-encrypted",
        path.display()
    );
    Ok(())
}
