//! The `slipway` CLI's connection to a controller: URL and token from flags, the environment
//! (`SLIPWAY_URL`, `SLIPWAY_TOKEN`) or a config file, and API errors turned into messages.
//!
//! Config file (`--cli-config`, `SLIPWAY_CLI_CONFIG`, default `~/.config/slipway/cli.toml`):
//! ```toml
//! url = "https://controller.example:7440"
//! token_file = "~/.config/slipway/token"   # or: token = "swt_..."
//! ca_cert = "/etc/slipway/tls/ca.pem"       # optional, for a private CA
//! ```

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use slipway_proto::api::ErrorBody;
use std::path::{Path, PathBuf};

/// Flags shared by every online command.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Controller URL, e.g. `http://127.0.0.1:7440`.
    #[arg(long, env = "SLIPWAY_URL", global = true)]
    pub url: Option<String>,
    /// Bearer token (prefer the environment or a token file over the command line).
    #[arg(long, env = "SLIPWAY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "SLIPWAY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate to trust for an `https://` controller with a private CA.
    #[arg(long, env = "SLIPWAY_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// CLI config file with url, token or token_file, ca_cert [default: ~/.config/slipway/cli.toml].
    #[arg(long, env = "SLIPWAY_CLI_CONFIG", global = true)]
    pub cli_config: Option<PathBuf>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// `wide`: full digests and timestamps in tables (default: `sha256:ab12cd34ef56`, `2m ago`).
    #[arg(short = 'o', long = "output", global = true, value_enum)]
    pub output: Option<Output>,
}

/// `-o` formats of tables.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Wide,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let path = expand_home(path);
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("reading token file {}", path.display()))?;
    Ok(t.trim().to_string())
}

/// A connected client.
pub struct Client {
    url: String,
    token: String,
    http: reqwest::Client,
    pub json: bool,
    /// `-o wide`: cells in full.
    pub wide: bool,
}

impl Client {
    /// Flags win over the environment (handled by clap), which wins over the config file.
    pub fn from_args(a: &ConnectArgs) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let default_path =
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/slipway/cli.toml"));
        let file: FileConfig = match a.cli_config.clone().or(default_path) {
            Some(p) if p.exists() || a.cli_config.is_some() => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading CLI config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("CLI config {}", p.display()))?
            }
            _ => FileConfig::default(),
        };
        let Some(url) = a.url.clone().or(file.url) else {
            bail!("no controller URL: pass --url, set SLIPWAY_URL, or put `url` in the CLI config");
        };
        let token = match (&a.token, &a.token_file, file.token, file.token_file) {
            (Some(t), _, _, _) => t.clone(),
            (None, Some(p), _, _) => read_token(p)?,
            (None, None, Some(t), _) => t,
            (None, None, None, Some(p)) => read_token(&p)?,
            _ => bail!(
                "no token: pass --token or --token-file, set SLIPWAY_TOKEN, or put `token`/`token_file` in the CLI config"
            ),
        };
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = a.ca_cert.clone().or(file.ca_cert) {
            let pem = std::fs::read(&ca).with_context(|| format!("reading CA {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("CA certificate {}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            token,
            http: builder.build().context("building the HTTP client")?,
            json: a.json,
            wide: a.output == Some(Output::Wide),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = self.http.get(format!("{}{path}", self.url));
        self.send(req, "GET", path).await
    }

    /// A GET answered as a Server-Sent Events stream (the response, its body unread).
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.stream_as(path, "text/event-stream").await
    }

    /// A GET whose answer is streamed as `accept` (the response, its body unread).
    pub async fn stream_as(&self, path: &str, accept: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .header("accept", accept)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("controller {} unreachable (GET {path})", self.url))?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            bail!("{msg}{} [HTTP {status}]", hint(status));
        }
        Ok(resp)
    }

    pub async fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = self.http.post(format!("{}{path}", self.url)).json(body);
        self.send(req, "POST", path).await
    }

    pub async fn post_toml<T: DeserializeOwned>(
        &self,
        path: &str,
        body: String,
    ) -> anyhow::Result<T> {
        let req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/toml")
            .body(body);
        self.send(req, "POST", path).await
    }

    /// A PUT whose body is raw bytes (a secret value).
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let req = self
            .http
            .put(format!("{}{path}", self.url))
            .header("content-type", "application/octet-stream")
            .body(body);
        self.send(req, "PUT", path).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let req = self.http.delete(format!("{}{path}", self.url));
        self.send::<serde_json::Value>(req, "DELETE", path)
            .await
            .map(|_| ())
    }

    pub async fn put_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = self.http.put(format!("{}{path}", self.url)).json(body);
        self.send(req, "PUT", path).await
    }

    /// A DELETE whose answer is a JSON body.
    pub async fn delete_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = self.http.delete(format!("{}{path}", self.url));
        self.send(req, "DELETE", path).await
    }

    /// The controller's base URL as this CLI reaches it.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        method: &str,
        path: &str,
    ) -> anyhow::Result<T> {
        let resp =
            req.bearer_auth(&self.token).send().await.with_context(|| {
                format!("controller {} unreachable ({method} {path})", self.url)
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .context("reading the controller's answer")?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
            bail!("{msg}{} [HTTP {}]", hint(status.as_u16()), status.as_u16());
        }
        let bytes = if bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).with_context(|| {
            format!("the controller's answer to {method} {path} is not what this CLI expects")
        })
    }
}

/// What to check after an error status.
fn hint(status: u16) -> &'static str {
    match status {
        401 => " (check --token / SLIPWAY_TOKEN)",
        403 => " (this token's role does not allow it)",
        _ => "",
    }
}

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// Prints `v` as pretty JSON.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
