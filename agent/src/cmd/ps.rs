//! `slipway-agent ps`.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`slipway-agent ps` is not available in this build yet")
}
