//! `slipway-agent logs <app>`: a container's stdout and stderr on this host, optionally
//! followed. The reading is shared with `slipway logs` ([`slipway_agent::logs`]).

use super::ps::Settings;
use slipway_agent::logs::read::Window;
use slipway_agent::logs::{copy, LogSink, Options};
use slipway_proto::api::logs::LogStream;
use std::io::Write;

#[derive(clap::Args)]
pub struct Args {
    /// App whose container to show: its running container with the highest seq, else its
    /// newest one (discarded containers keep their recent logs).
    app: String,
    /// Show this release's container instead.
    #[arg(long)]
    seq: Option<u64>,
    /// Keep printing output as it arrives (Ctrl-C to stop); moves to a newer container of
    /// the app when one starts, unless --seq is given.
    #[arg(long, short)]
    follow: bool,
    /// Only output written since then: a duration back from now (`10m`) or an RFC 3339 time
    /// (lengths are noted every second, so lines up to a second older may show).
    #[arg(long, value_name = "DURATION|RFC3339")]
    since: Option<String>,
    /// Only the last N lines of each stream.
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    #[command(flatten)]
    settings: Settings,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.settings.runtime_config()?;
    let since = match args.since.as_deref() {
        None => None,
        Some(s) => Some(parse_since(s)?),
    };
    let opts = Options {
        seq: args.seq,
        window: Window {
            since,
            tail: args.tail,
        },
        follow: args.follow,
    };
    copy(&cfg.state_dir, &args.app, opts, &mut Terminal).await
}

/// `10m` back from now, or an RFC 3339 time.
fn parse_since(s: &str) -> anyhow::Result<std::time::SystemTime> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(std::time::SystemTime::now() - d);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|_| anyhow::anyhow!("--since `{s}`: give a duration (`10m`) or an RFC 3339 time"))
}

/// The container's stdout to ours, its stderr to ours.
struct Terminal;

impl LogSink for Terminal {
    async fn output(&mut self, stream: LogStream, bytes: &[u8]) -> std::io::Result<()> {
        match stream {
            LogStream::Stdout => {
                let mut o = std::io::stdout().lock();
                o.write_all(bytes)?;
                o.flush()
            }
            LogStream::Stderr => std::io::stderr().write_all(bytes),
        }
    }

    async fn idle(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn note(&mut self, note: String) -> std::io::Result<()> {
        writeln!(std::io::stderr(), "-- {note}")
    }
}
