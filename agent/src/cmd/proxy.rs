//! `slipway-agent proxy`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`slipway-agent proxy` is not available in this build yet")
}
