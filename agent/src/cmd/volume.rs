//! `slipway-agent volume ls | rm NAME`: the named volumes this host keeps. No deploy, rollback
//! or app removal deletes one; only `volume rm` does, and not while a container mounts it.

use super::ps::Settings;
use slipway_runtime::volumes::{self, VolumeInfo};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List named volumes: name, the app that created it, its host path, who mounts it.
    Ls {
        #[command(flatten)]
        settings: Settings,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a named volume and all its data (refused while a container mounts it).
    Rm {
        #[command(flatten)]
        settings: Settings,
        /// The volume's name.
        name: String,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Ls { settings, json } => {
            let cfg = settings.runtime_config()?;
            let list = volumes::list(&cfg.volumes_dir(), &cfg.state_dir)?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "name": v.name, "created_by": v.created_by,
                            "path": v.path, "used_by": v.used_by,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", table(&list));
            }
        }
        Command::Rm { settings, name } => {
            let cfg = settings.runtime_config()?;
            volumes::remove(&cfg.volumes_dir(), &cfg.state_dir, &name)?;
            println!("removed volume {name}");
        }
    }
    Ok(())
}

fn table(list: &[VolumeInfo]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:<20} {}\n",
        "NAME", "CREATED BY", "USED BY", "PATH"
    );
    for v in list {
        let used = if v.used_by.is_empty() {
            "-".to_string()
        } else {
            v.used_by.join(",")
        };
        out.push_str(&format!(
            "{:<24} {:<20} {:<20} {}\n",
            v.name,
            v.created_by,
            used,
            v.path.display()
        ));
    }
    out
}
