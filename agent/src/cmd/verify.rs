//! `slipway-agent verify`: check a signed release file the way the agent does before acting.

use anyhow::Context;
use slipway_proto::{check_seq, Envelope, TrustFile};
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    /// Trust file (TOML) listing the keys allowed to sign releases and the threshold.
    #[arg(long)]
    trust: PathBuf,
    /// Last seq applied for this app; the release must be strictly greater.
    #[arg(long)]
    last_seq: Option<u64>,
    /// Signed release file (JSON envelope), as printed by `slipway release sign`.
    release: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let trust_text = std::fs::read_to_string(&args.trust)
        .with_context(|| format!("reading trust file {}", args.trust.display()))?;
    let trust = TrustFile::from_toml(&trust_text)
        .with_context(|| format!("trust file {}", args.trust.display()))?;
    let bytes = std::fs::read(&args.release)
        .with_context(|| format!("reading release {}", args.release.display()))?;
    let verified = Envelope::from_json(&bytes)
        .and_then(|env| env.verify_release(&trust, SystemTime::now()))
        .with_context(|| format!("release {} refused", args.release.display()))?;
    let r = &verified.release;
    check_seq(&r.app, r.seq, args.last_seq)
        .with_context(|| format!("release {} refused", args.release.display()))?;
    println!("app {}", r.app);
    println!("seq {}", r.seq);
    println!("image {}", verified.image);
    println!("expires {}", humantime::format_rfc3339_seconds(r.expires));
    Ok(())
}
