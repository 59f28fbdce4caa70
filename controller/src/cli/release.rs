//! `slipway release sign`: offline signing of a release, for air-gapped keys and tests.

use crate::signer::{self, ReleaseParams, DEFAULT_VALIDITY};
use anyhow::Context;
use slipway_proto::{AppSpec, ImageRef};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Build and sign a release; prints the signed envelope (JSON) on stdout.
    Sign(SignArgs),
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Signing key (`release.key` from `slipway keygen`); repeat for multi-signature releases.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// App spec (TOML).
    #[arg(long)]
    app_spec: PathBuf,
    /// Image pinned by digest: `REPOSITORY@sha256:<64 hex>`; tags are refused.
    #[arg(long)]
    image: String,
    /// Sequence number; agents accept only a seq above the last they applied.
    #[arg(long)]
    seq: u64,
    /// Validity, e.g. `7d`, `12h`.
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<Duration>,
    /// Key set version the release is signed for.
    #[arg(long, default_value_t = 1)]
    key_set_version: u64,
    /// Provenance annotation `KEY=VALUE` (repeatable), e.g. `commit=abc123`.
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Sign(a) = cmd;
    let text = std::fs::read_to_string(&a.app_spec)
        .with_context(|| format!("reading app spec {}", a.app_spec.display()))?;
    let spec =
        AppSpec::from_toml(&text).with_context(|| format!("app spec {}", a.app_spec.display()))?;
    let image: ImageRef = a.image.parse()?;
    let keys = a
        .keys
        .iter()
        .map(|p| signer::load_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut annotations = BTreeMap::new();
    for kv in &a.annotations {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("annotation `{kv}` is not KEY=VALUE"))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    let params = ReleaseParams {
        seq: a.seq,
        image,
        validity: a.expires.unwrap_or(DEFAULT_VALIDITY),
        key_set_version: a.key_set_version,
        annotations,
    };
    let key_refs: Vec<_> = keys.iter().collect();
    let (_, env) = signer::sign_release(&spec, params, &key_refs)?;
    let json = env.to_json();
    match a.out {
        Some(p) => {
            std::fs::write(&p, json + "\n").with_context(|| format!("writing {}", p.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}
