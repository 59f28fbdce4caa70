//! `slipway release <app> --image REF`: ask the controller to resolve, sign and publish a
//! release. `slipway release sign ...`: offline signing, for air-gapped keys and tests.

use crate::signer::{self, ReleaseParams, DEFAULT_VALIDITY};
use anyhow::Context;
use slipway_proto::{AppSpec, ImageRef};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `slipway release`: online (`<APP> --image REF`) or offline (`sign ...`).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub offline: Option<Command>,
    /// App to release: the controller resolves the image to a digest, signs release
    /// seq N+1 and publishes it to the app's hosts. (An app named `sign`: put it after `--`.)
    #[arg(required = true)]
    pub app: Option<String>,
    /// `REPOSITORY:TAG`, `REPOSITORY` (tag `latest`) or `REPOSITORY@sha256:<64 hex>`; the
    /// repository must be the app spec's `image`.
    #[arg(long, required = true)]
    pub image: Option<String>,
    /// Provenance annotation `KEY=VALUE` (repeatable), e.g. `commit=abc123`.
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Follow the rollout until it is live everywhere (exit 0), halts or is rolled back
    /// (exit 2), or `--timeout` passes (exit 3).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub timeout: super::watch::TimeoutArg,
}

/// `slipway release <app> --image REF` against the controller.
pub async fn run_online(client: &super::client::Client, a: Args) -> anyhow::Result<()> {
    let (Some(app), Some(image)) = (a.app, a.image) else {
        anyhow::bail!("usage: slipway release <APP> --image REF, or slipway release sign ...");
    };
    let req = slipway_proto::api::CreateReleaseRequest {
        image: image.clone(),
        annotations: parse_annotations(&a.annotations)?,
    };
    let r: slipway_proto::api::ReleaseInfo = client
        .post(&format!("/v1/apps/{app}/releases"), &req)
        .await
        .with_context(|| format!("releasing {app} with {image}"))?;
    if client.json {
        super::client::print_json(&r)?;
    } else {
        println!("released {} seq {}: {}", r.app, r.seq, r.image);
    }
    if a.wait {
        super::watch::follow(client, &r.app, Some(r.seq), a.timeout.get()).await?;
    }
    Ok(())
}

fn parse_annotations(kvs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut annotations = BTreeMap::new();
    for kv in kvs {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("annotation `{kv}` is not KEY=VALUE"))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    Ok(annotations)
}

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
        .collect::<Result<Vec<_>, _>>()?;
    let annotations = parse_annotations(&a.annotations)?;
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
