//! `slipway secret set|list|rm APP ...`: secret values go in, never come out.

use super::client::{print_json, table, Client};
use anyhow::{bail, Context};
use slipway_proto::api::SecretInfo;
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Set a secret's value (a new version) from stdin, or from `--file`.
    Set {
        app: String,
        name: String,
        /// Read the value from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Secret names, versions, who set them and when (names only for read-only tokens).
    List { app: String },
    /// Remove a secret (every version).
    Rm { app: String, name: String },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Set { app, name, file } => {
            let value = match &file {
                Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
                None => {
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .context("reading the value from stdin")?;
                    v
                }
            };
            if value.is_empty() {
                bail!("secret `{name}` of app `{app}`: the value is empty");
            }
            let s: SecretInfo = client
                .put_bytes(&format!("/v1/apps/{app}/secrets/{name}"), value)
                .await?;
            if client.json {
                return print_json(&s);
            }
            println!(
                "secret {app}/{name} set: version {}",
                s.version.unwrap_or_default()
            );
        }
        Command::List { app } => {
            let ss: Vec<SecretInfo> = client.get(&format!("/v1/apps/{app}/secrets")).await?;
            if client.json {
                return print_json(&ss);
            }
            table(
                &["NAME", "VERSION", "SET BY", "SET"],
                ss.into_iter()
                    .map(|s| {
                        vec![
                            s.name,
                            s.version.map(|v| v.to_string()).unwrap_or_default(),
                            s.set_by.unwrap_or_default(),
                            s.set_at
                                .map(|t| super::cells::age(&t, client.wide))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Rm { app, name } => {
            client
                .delete(&format!("/v1/apps/{app}/secrets/{name}"))
                .await?;
            if !client.json {
                println!("secret {app}/{name} removed");
            }
        }
    }
    Ok(())
}
