//! `slipway app apply|list|show`: app specs on the controller.

use super::client::{print_json, table, Client};
use anyhow::Context;
use slipway_proto::api::AppInfo;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply an app spec (app.toml): creates the app or a new spec version.
    Apply {
        /// The app spec (TOML; see deploy/examples/app.toml).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List apps and their spec versions.
    List,
    /// Show one app's current spec.
    Show {
        /// App name.
        app: String,
    },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading app spec {}", file.display()))?;
            let info: AppInfo = client
                .post_toml("/v1/apps", text)
                .await
                .with_context(|| format!("applying {}", file.display()))?;
            if client.json {
                print_json(&info)?;
            } else {
                println!("app {} spec version {}", info.name, info.version);
            }
        }
        Command::List => {
            let apps: Vec<AppInfo> = client.get("/v1/apps").await?;
            if client.json {
                return print_json(&apps);
            }
            table(
                &["APP", "VERSION", "IMAGE", "LISTEN", "UPDATED"],
                apps.into_iter()
                    .map(|a| {
                        vec![
                            a.name,
                            a.version.to_string(),
                            a.spec.image,
                            a.spec.listen.to_string(),
                            super::cells::age(&a.updated_at, client.wide),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Show { app } => {
            let info: AppInfo = client.get(&format!("/v1/apps/{app}")).await?;
            if client.json {
                return print_json(&info);
            }
            println!(
                "# app {} spec version {} ({})",
                info.name, info.version, info.updated_at
            );
            print!("{}", info.spec.to_toml());
        }
    }
    Ok(())
}
