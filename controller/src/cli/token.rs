//! `slipway token create|list|revoke`: operator and agent tokens (admin only).

use super::client::{print_json, table, Client};
use slipway_proto::api::{CreateTokenRequest, CreatedToken, Role, TokenInfo};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a token; prints the secret once on stdout.
    Create {
        /// Unique name, recorded as the actor in the audit log.
        #[arg(long)]
        name: String,
        /// admin, read-only, or agent (one host).
        #[arg(long)]
        role: Role,
        /// For agent tokens: the host id the token speaks for.
        #[arg(long)]
        host: Option<slipway_proto::HostId>,
    },
    /// List tokens (names and roles; secrets are never shown again).
    List,
    /// Revoke a token at once.
    Revoke {
        /// Token name.
        name: String,
    },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create { name, role, host } => {
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
