//! `slipway-agent join TOKEN`: registers this host with the controller a join token names,
//! after checking that controller against the token (its release key id, and its TLS CA
//! fingerprint when it serves TLS). On success, and only then, it writes the host's own
//! agent token (0600), the trust file, the controller's CA (when pinned) and the
//! `[controller]` section of agent.toml; `--start` then runs the agent.

use anyhow::{bail, Context};
use slipway_proto::join::{JoinAnswer, JoinInfo, JoinRequest, JoinToken};
use slipway_proto::{PublicKey, TrustFile};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// The join token (`slipway token create --role join ...`); or `--token`.
    #[arg(conflicts_with = "token_flag")]
    token: Option<String>,
    /// The join token, as a flag.
    #[arg(
        long = "token",
        id = "token_flag",
        env = "SLIPWAY_JOIN_TOKEN",
        hide_env_values = true
    )]
    token_flag: Option<String>,
    /// Reach the controller here rather than at the URL in the token (the key id and CA
    /// fingerprint in the token are checked all the same).
    #[arg(long)]
    url: Option<String>,
    /// This host's id [default: the machine's hostname].
    #[arg(long)]
    host_id: Option<String>,
    /// Labels to ask for, `k=v,k2=v2`: each must be one the join token grants (the host gets
    /// all the token grants either way; asking for another is refused).
    #[arg(long, default_value = "")]
    labels: String,
    /// The agent config to write (its `trust` and `[controller]`; other keys are kept).
    #[arg(long, short, default_value = "/etc/slipway/agent.toml")]
    config: PathBuf,
    /// Where the agent token, trust file and controller CA go [default: the config's
    /// directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The agent's controller cache dir (its X25519 key is made there).
    #[arg(long, default_value = "/var/lib/slipway/controller")]
    cache_dir: PathBuf,
    /// Run the agent once joined (as `slipway-agent run --config CONFIG`).
    #[arg(long)]
    start: bool,
}

/// What `join` writes, named in its output.
struct Files {
    token: PathBuf,
    trust: PathBuf,
    ca: Option<PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let text = a
        .token
        .clone()
        .or(a.token_flag.clone())
        .context("no join token: pass it as an argument or --token")?;
    let token = JoinToken::decode(&text)?;
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| token.url.clone())
        .trim_end_matches('/')
        .to_string();
    let host = match &a.host_id {
        Some(h) => h.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .context("reading /etc/hostname for the host id (or pass --host-id)")?
            .trim()
            .to_string(),
    };
    host.parse::<slipway_proto::HostId>()
        .with_context(|| format!("host id `{host}`"))?;
    let labels = parse_labels(&a.labels)?;
    let (info, ca_pem) = check_controller(&url, &token).await?;
    let dir = a.dir.clone().unwrap_or_else(|| {
        a.config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let files = Files {
        token: dir.join("agent.token"),
        trust: dir.join("trust.toml"),
        ca: ca_pem.as_ref().map(|_| dir.join("controller-ca.pem")),
    };
    let ca_file = match (&ca_pem, &files.ca) {
        (Some(pem), Some(path)) => {
            // Needed to speak verified TLS below; removed again if the join fails.
            std::fs::create_dir_all(&dir)?;
            write_atomic(path, pem.as_bytes(), 0o644)?;
            Some(path.clone())
        }
        _ => None,
    };
    let answer = match register(&a, &url, &token, &host, labels, ca_file.as_deref()).await {
        Ok(x) => x,
        Err(e) => {
            if let Some(p) = &ca_file {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    let pk = PublicKey::parse(&info.public_key)?;
    let trust =
        TrustFile::new(vec![pk], 1, info.key_set_version).context("making the trust file")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &files.token,
        format!("{}\n", answer.agent_token).as_bytes(),
        0o600,
    )?;
    write_atomic(&files.trust, trust.to_toml().as_bytes(), 0o644)?;
    write_config(&a, &url, &host, &files)?;
    println!(
        "host {host} joined {url} as {} with labels {}; wrote {}, {}, {}{}",
        answer.token_name,
        label_list(&answer.labels),
        files.token.display(),
        files.trust.display(),
        a.config.display(),
        files
            .ca
            .as_ref()
            .map(|c| format!(", {}", c.display()))
            .unwrap_or_default()
    );
    if a.start {
        return super::run::run(super::run::Args::with_config(a.config.clone())).await;
    }
    Ok(())
}

/// Asks the controller at `url` for its release key and TLS CA and checks them against the
/// join token; answers them, the CA only when the token pins one.
async fn check_controller(
    url: &str,
    token: &JoinToken,
) -> anyhow::Result<(JoinInfo, Option<String>)> {
    // When the token pins a CA, this first answer is read without checking the server's
    // certificate: nothing in it is trusted before it matches the token.
    let http = reqwest::Client::builder()
        .connect_timeout(slipway_agent::source::controller::CONNECT_TIMEOUT)
        .tls_danger_accept_invalid_certs(token.ca_sha256.is_some())
        .build()?;
    let resp = http
        .get(format!("{url}/v1/join"))
        .send()
        .await
        .with_context(|| format!("controller {url} unreachable"))?;
    if !resp.status().is_success() {
        bail!(
            "controller {url} answered {} to GET /v1/join: is it a Slipway controller of this \
             version or newer?",
            resp.status()
        );
    }
    let info: JoinInfo = resp
        .json()
        .await
        .with_context(|| format!("controller {url}: GET /v1/join answer"))?;
    let pk = PublicKey::parse(&info.public_key)
        .with_context(|| format!("controller {url}: its release public key"))?;
    let id = pk.id().to_string();
    if id != token.key_id || info.key_id != token.key_id {
        bail!(
            "release key mismatch: the controller at {url} signs releases with key {id}, but \
             the join token pins key {}: a join token for another controller (or someone in \
             between); nothing written",
            token.key_id
        );
    }
    let ca = match &token.ca_sha256 {
        None => None,
        Some(want) => {
            let pem = info.ca_pem.clone().with_context(|| {
                format!("the join token pins a TLS CA but the controller at {url} serves none; nothing written")
            })?;
            let got = pem_sha256(&pem)?;
            if &got != want {
                bail!(
                    "TLS fingerprint mismatch: the controller at {url} presents CA sha256 {got}, \
                     the join token pins {want}; nothing written"
                );
            }
            Some(pem)
        }
    };
    Ok((info, ca))
}

async fn register(
    a: &Args,
    url: &str,
    token: &JoinToken,
    host: &str,
    labels: BTreeMap<String, String>,
    ca: Option<&Path>,
) -> anyhow::Result<JoinAnswer> {
    let http = slipway_agent::source::controller::http_client(ca)?;
    let key = slipway_agent::host_key::load_or_create(&a.cache_dir)?;
    let req = JoinRequest {
        secret: token.secret.clone(),
        host: host.to_string(),
        labels,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        secret_key: Some(key.public()),
    };
    let resp = http
        .post(format!("{url}/v1/join"))
        .json(&req)
        .send()
        .await
        .with_context(|| format!("joining {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_slice::<slipway_proto::api::ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        bail!(
            "controller {url} refused the join: {msg} [HTTP {}]",
            status.as_u16()
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("controller {url}: join answer"))
}

/// Sets `trust` and `[controller]` in the agent config, keeping every other key.
fn write_config(a: &Args, url: &str, host: &str, files: &Files) -> anyhow::Result<()> {
    let mut doc: toml::Table = match std::fs::read_to_string(&a.config) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("agent config {} (kept as it was)", a.config.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", a.config.display())),
    };
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    doc.insert("trust".into(), path(&files.trust));
    let mut c = toml::Table::new();
    c.insert("url".into(), toml::Value::String(url.into()));
    c.insert("host_id".into(), toml::Value::String(host.into()));
    c.insert("token_file".into(), path(&files.token));
    c.insert("cache_dir".into(), path(&a.cache_dir));
    if let Some(ca) = &files.ca {
        c.insert("ca_cert".into(), path(ca));
    }
    // No `labels`: the controller keeps the join token's, and refuses an agent's others.
    doc.insert("controller".into(), toml::Value::Table(c));
    if let Some(d) = a.config.parent() {
        std::fs::create_dir_all(d)?;
    }
    let text = format!(
        "# [controller] and trust written by `slipway-agent join`.\n{}",
        toml::to_string(&doc)?
    );
    write_atomic(&a.config, text.as_bytes(), 0o644)
}

/// Temp file, fsync, rename: a crash leaves the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn pem_sha256(pem: &str) -> anyhow::Result<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .context("the controller's CA is not a PEM certificate")?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        der.as_ref(),
    )))
}

fn parse_labels(s: &str) -> anyhow::Result<BTreeMap<String, String>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("label `{p}` must be key=value"),
        })
        .collect()
}

fn label_list(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(none)".into();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.join(",")
}
