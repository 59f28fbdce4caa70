//! `slipway token create|list|revoke`: operator, agent and join tokens (admin only).

use super::client::{print_json, table, Client};
use anyhow::{bail, Context};
use slipway_proto::api::{CreateTokenRequest, CreatedToken, Role, TokenInfo};
use slipway_proto::join::{CreateJoinTokenRequest, CreatedJoinToken, JoinToken, JoinTokenInfo};
use std::collections::BTreeMap;

/// `--role`: a bearer token's role, or `join`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Everything, including tokens.
    Admin,
    /// Every read but agents' desired sets.
    ReadOnly,
    /// One host's agent (`--host`).
    Agent,
    /// Lets new VMs register themselves (`--labels`, `--ttl`, `--uses`): each gets its own
    /// agent token and the labels the join token grants.
    Join,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a token; prints the secret once on stdout. A join token
    /// (`--role join --labels role=web,zone=a --ttl 24h --uses 50`) carries this controller's
    /// URL (as this CLI reaches it, or `--controller-url`), its TLS CA fingerprint and its
    /// release key id: `slipway-agent join TOKEN` on a new VM checks both before it trusts
    /// anything.
    Create {
        /// Unique name, recorded as the actor in the audit log (join tokens: default
        /// `join-<random>`).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum)]
        role: Kind,
        /// For agent tokens: the host id the token speaks for.
        #[arg(long)]
        host: Option<slipway_proto::HostId>,
        /// For join tokens: the labels every joining host gets, `k=v,k2=v2`; agents cannot
        /// widen them.
        #[arg(long, value_parser = parse_labels, default_value = "")]
        labels: BTreeMap<String, String>,
        /// For join tokens: how long it can be used.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// For join tokens: how many hosts may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u64,
        /// For join tokens: the URL agents reach the controller at, when not the one this CLI
        /// uses.
        #[arg(long)]
        controller_url: Option<String>,
    },
    /// List tokens (names and roles; secrets are never shown again), then join tokens.
    List,
    /// Revoke a token at once.
    Revoke {
        /// Token name.
        name: String,
    },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create {
            role: Kind::Join,
            name,
            labels,
            ttl,
            uses,
            controller_url,
            host,
        } => {
            if host.is_some() {
                bail!("--host is for agent tokens; a join token lets any new host id join");
            }
            let t: CreatedJoinToken = client
                .post(
                    "/v1/join-tokens",
                    &CreateJoinTokenRequest {
                        name,
                        labels,
                        ttl,
                        uses,
                    },
                )
                .await?;
            let token = JoinToken {
                url: controller_url.unwrap_or_else(|| client.url().to_string()),
                ca_sha256: t.ca_sha256.clone(),
                key_id: t.key_id.clone(),
                secret: t.secret.clone(),
            }
            .encode();
            if client.json {
                print_json(&serde_json::json!({"name": t.name, "token": token,
                    "expires_at": t.expires_at, "key_id": t.key_id, "ca_sha256": t.ca_sha256}))?;
            } else {
                println!("{token}");
            }
        }
        Command::Create {
            name, role, host, ..
        } => {
            let name = name.context("--name is required for admin, read-only and agent tokens")?;
            let role = match role {
                Kind::Admin => Role::Admin,
                Kind::ReadOnly => Role::ReadOnly,
                Kind::Agent => Role::Agent,
                Kind::Join => unreachable!("handled above"),
            };
            let t: CreatedToken = client
                .post("/v1/tokens", &CreateTokenRequest { name, role, host })
                .await?;
            if client.json {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
            }
        }
        Command::List => {
            let ts: Vec<TokenInfo> = client.get("/v1/tokens").await?;
            if client.json {
                return print_json(&ts);
            }
            table(
                &["NAME", "ROLE", "HOST", "CREATED"],
                ts.into_iter()
                    .map(|t| {
                        vec![
                            t.name,
                            t.role.to_string(),
                            t.host.map(String::from).unwrap_or_default(),
                            super::cells::age(&t.created_at, client.wide),
                        ]
                    })
                    .collect(),
            );
            let js: Vec<JoinTokenInfo> = client.get("/v1/join-tokens").await?;
            if !js.is_empty() {
                println!();
                table(
                    &["JOIN TOKEN", "LABELS", "USED", "EXPIRES", "BY"],
                    js.into_iter()
                        .map(|t| {
                            let labels: Vec<String> =
                                t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            vec![
                                t.name,
                                labels.join(","),
                                format!("{}/{}", t.used, t.uses),
                                t.expires_at,
                                t.created_by,
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Revoke { name } => {
            client.delete(&format!("/v1/tokens/{name}")).await?;
            if !client.json {
                println!("token {name} revoked");
            }
        }
    }
    Ok(())
}

/// `k=v,k2=v2` (empty: none).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("label `{p}` must be key=value")),
        })
        .collect()
}
