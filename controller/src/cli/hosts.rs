//! `slipway hosts [cordon|uncordon|drain|remove HOST | label HOST k=v...]`: the fleet's hosts and their lifecycle.

use super::client::{print_json, Client};
use slipway_proto::api::HostInfo;

/// With no subcommand: list the hosts (labels, agent version, state, last seen).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Give the host no new releases: new rollouts leave it out and it keeps what it runs.
    Cordon {
        /// Host id.
        host: String,
    },
    /// Let a cordoned or drained host back in: it gets the live release of its apps at once.
    Uncordon {
        /// Host id.
        host: String,
    },
    /// Empty the host: its desired set becomes empty, so its agent unroutes and discards
    /// every app (the proxy drains in-flight requests first); it gets no new releases until
    /// `uncordon`.
    Drain {
        /// Host id.
        host: String,
    },
    /// Set the host's labels (replacing them all), e.g. `slipway hosts label web-07 role=web
    /// zone=b`; from then on its agent cannot change them (as for a host that joined).
    Label {
        /// Host id.
        host: String,
        /// `key=value` pairs.
        #[arg(required = true, value_parser = super::token::parse_labels)]
        labels: Vec<std::collections::BTreeMap<String, String>>,
    },
    /// Forget the host (a terminated VM): its status, its agent tokens (revoked at once: its
    /// agent gets 401) and its secret key registration (nothing issued after is sealed to
    /// it). Refused while it is the only canary of a rollout that is not live on it yet.
    Remove {
        /// Host id.
        host: String,
    },
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<()> {
    let (host, action) = match a.command {
        None => return super::status::hosts(client).await,
        Some(Command::Remove { host }) => {
            let removed: serde_json::Value =
                client.delete_json(&format!("/v1/hosts/{host}")).await?;
            if client.json {
                return print_json(&removed);
            }
            let tokens: Vec<&str> = removed["revoked_tokens"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
                .unwrap_or_default();
            println!(
                "host {host} removed; agent tokens revoked: {}",
                if tokens.is_empty() {
                    "none".to_string()
                } else {
                    tokens.join(", ")
                }
            );
            return Ok(());
        }
        Some(Command::Label { host, labels }) => {
            let labels: std::collections::BTreeMap<String, String> =
                labels.into_iter().flatten().collect();
            let h: HostInfo = client
                .put_json(
                    &format!("/v1/hosts/{host}/labels"),
                    &slipway_proto::api::LabelsRequest { labels },
                )
                .await?;
            if client.json {
                return print_json(&h);
            }
            let labels: Vec<String> = h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("host {} labels: {}", h.host, labels.join(","));
            return Ok(());
        }
        Some(Command::Cordon { host }) => (host, "cordon"),
        Some(Command::Uncordon { host }) => (host, "uncordon"),
        Some(Command::Drain { host }) => (host, "drain"),
    };
    let h: HostInfo = client
        .post(
            &format!("/v1/hosts/{host}/{action}"),
            &serde_json::json!({}),
        )
        .await?;
    if client.json {
        return print_json(&h);
    }
    println!("host {} is {}", h.host, state_cell(&h));
    Ok(())
}

/// `active`, `cordoned`, `drained`, with `, down` when it is silent past `host_down_after`.
pub fn state_cell(h: &HostInfo) -> String {
    if h.down {
        format!("{}, down", h.lifecycle)
    } else {
        h.lifecycle.to_string()
    }
}
