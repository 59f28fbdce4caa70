//! `slipway trust init`: a trust file from one or more public keys.

use anyhow::Context;
use slipway_proto::{PublicKey, TrustFile};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write a trust file listing the given public keys (threshold 1 unless `--threshold`).
    Init {
        /// Public key file (`release.pub`); repeat to trust several keys (rotation).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Distinct trusted keys that must sign each release.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Key set version; agents refuse releases signed for an older one.
        #[arg(long, default_value_t = 1)]
        key_set_version: u64,
        /// Where to write the trust file; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Init {
        keys,
        threshold,
        key_set_version,
        out,
    } = cmd;
    let mut parsed = Vec::new();
    for k in &keys {
        let text = std::fs::read_to_string(k)
            .with_context(|| format!("reading public key {}", k.display()))?;
        parsed
            .push(PublicKey::parse(&text).with_context(|| format!("public key {}", k.display()))?);
    }
    let trust = TrustFile::new(parsed, threshold, key_set_version)?;
    if out.exists() {
        anyhow::bail!("{} already exists; refusing to overwrite", out.display());
    }
    let text = format!(
        "# Slipway trust file: releases must carry valid signatures by `threshold` distinct keys below.\n{}",
        trust.to_toml()
    );
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    for id in trust.keys.keys() {
        println!("{id}");
    }
    Ok(())
}
