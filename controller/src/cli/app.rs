//! `slipway app apply|list|show`: app specs on the controller.

use super::client::{print_json, table, Client};
use anyhow::Context;
use slipway_proto::api::{AppInfo, CreateReleaseRequest, ReleaseInfo};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Apply an app spec (app.toml): creates the app or a new spec version.
    Apply {
        /// The app spec (TOML; see deploy/examples/app.toml).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// When the spec changed and the app has a release: release it at once with the live
        /// image, through the app's waves (without this flag a terminal asks).
        #[arg(long)]
        release: bool,
        /// With --release: follow that rollout like `slipway release --wait`.
        #[arg(long, requires = "release")]
        wait: bool,
        #[command(flatten)]
        timeout: super::watch::TimeoutArg,
    },
    /// List apps and their spec versions.
    List,
    /// Show one app's current spec.
    Show {
        /// App name.
        app: String,
    },
}

/// A changed spec reaches the hosts only in a release: make one with the live image (asked
/// on a terminal, at once with `--release`), or say how.
async fn release_changed_spec(
    client: &Client,
    info: &AppInfo,
    file: &std::path::Path,
    release: bool,
    wait: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    let app = &info.name;
    let history: Vec<ReleaseInfo> = client.get(&format!("/v1/apps/{app}/releases")).await?;
    let Some(live) = history.last() else {
        return Ok(());
    };
    let go = release || (!client.json && std::io::stdin().is_terminal() && ask(app, info, live)?);
    if !go {
        if !client.json {
            println!(
                "spec version {} is not running anywhere yet: `slipway app apply -f {} --release` \
                 (or `slipway release {app} --image {}`) rolls it out through the waves",
                info.version,
                file.display(),
                live.image
            );
        }
        return Ok(());
    }
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(
        "slipway.reason".to_string(),
        format!("spec version {}", info.version),
    );
    let req = CreateReleaseRequest {
        image: live.image.clone(),
        annotations,
    };
    let r: ReleaseInfo = client
        .post(&format!("/v1/apps/{app}/releases"), &req)
        .await
        .with_context(|| format!("releasing {app} spec version {}", info.version))?;
    if client.json {
        print_json(&r)?;
    } else {
        println!(
            "released {} seq {}: {} with spec version {}",
            r.app, r.seq, r.image, info.version
        );
    }
    if wait {
        super::watch::follow(client, &r.app, Some(r.seq), timeout).await?;
    }
    Ok(())
}

fn ask(app: &str, info: &AppInfo, live: &ReleaseInfo) -> anyhow::Result<bool> {
    use std::io::Write;
    print!(
        "release {app} spec version {} with the live image {} (seq {}) through its waves? [y/N] ",
        info.version, live.image, live.seq
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Apply {
            file,
            release,
            wait,
            timeout,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading app spec {}", file.display()))?;
            let spec = slipway_proto::AppSpec::from_toml(&text)
                .with_context(|| format!("app spec {}", file.display()))?;
            let before = client
                .get::<AppInfo>(&format!("/v1/apps/{}", spec.name))
                .await
                .ok()
                .map(|a| a.version);
            let info: AppInfo = client
                .post_toml("/v1/apps", text)
                .await
                .with_context(|| format!("applying {}", file.display()))?;
            if client.json {
                print_json(&info)?;
            } else {
                println!("app {} spec version {}", info.name, info.version);
            }
            if before.is_some_and(|v| v != info.version) {
                release_changed_spec(client, &info, &file, release, wait, timeout.get()).await?;
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
