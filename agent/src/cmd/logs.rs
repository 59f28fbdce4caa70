//! `slipway-agent logs`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`slipway-agent logs` is not available in this build yet")
}
