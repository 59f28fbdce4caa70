//! Controller source: the host registers with the controller, long-polls
//! `GET /v1/hosts/{host}/desired` for the signed releases aimed at it, and reports each deploy
//! phase. The last set received is kept on disk (temp + fsync + rename) and served whenever
//! the controller cannot be reached, so the data plane outlives the control plane.
//!
//! A set is taken whole and verified by nobody here: the reconciler verifies each release on
//! its own, so one expired or badly signed release is refused for its app only and never
//! holds up the others.
//!
//! Config (the agent's `[controller]` table):
//! ```toml
//! url = "https://controller.example:7440"
//! host_id = "web-1"
//! token_file = "/etc/slipway/agent.token"   # an agent token bound to host_id
//! cache_dir = "/var/lib/slipway/controller"
//! [labels]
//! role = "web"
//! ```

mod cache;
mod client;

pub use client::http_client;
pub(crate) use client::{api_error, backoff, read_token};

use anyhow::{bail, Context};
use cache::{load_cache, save_cache};
use client::refused_token;
use serde::{Deserialize, Serialize};
use slipway_proto::api::{DesiredSetBody, HostStatus, RegisterRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long one long-poll asks the controller to wait for a change.
pub const POLL_WAIT: Duration = Duration::from_secs(30);
/// Extra time over [`POLL_WAIT`] before the agent gives up on an answer.
pub const POLL_SLACK: Duration = Duration::from_secs(15);
/// First retry delay after a failure; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest pause between attempts while the controller is unreachable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Connecting to the controller takes longer than this only when something is wrong.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of the cached desired set under `cache_dir`.
pub const CACHE_FILE: &str = "desired.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSourceConfig {
    /// Controller base URL, e.g. `https://controller.example:7440`.
    pub url: String,
    /// This host's id; the token must be an agent token for it.
    pub host_id: String,
    /// Labels the controller's selectors match against.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// File holding the agent token (re-read when the controller answers 401).
    pub token_file: PathBuf,
    /// Where the last received desired set is kept.
    pub cache_dir: PathBuf,
    /// PEM CA certificate(s) to trust for an `https://` controller with a private CA (beside
    /// the system's roots). `slipway-agent join` writes it from the pinned join token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// A desired set: app name -> signed release envelope bytes (JSON), unverified.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSet {
    /// Opaque; changes whenever any release in the set changes (including a re-signature).
    pub version: String,
    pub releases: BTreeMap<String, Vec<u8>>,
    /// App -> secret -> pinned version sealed to this host (ciphertext).
    pub secrets: BTreeMap<String, crate::secrets::Sealed>,
    /// App -> a release of a later wave, whose image is pulled ahead (unverified bytes).
    pub upcoming: BTreeMap<String, Vec<u8>>,
    /// True when the controller could not be reached and this came from the on-disk cache.
    pub from_cache: bool,
}

impl DesiredSet {
    fn from_body(body: &DesiredSetBody, from_cache: bool) -> Self {
        Self {
            version: body.version.clone(),
            releases: envelope_bytes(&body.releases),
            secrets: body.secrets.clone(),
            upcoming: envelope_bytes(&body.upcoming),
            from_cache,
        }
    }
}

fn envelope_bytes(envs: &BTreeMap<String, slipway_proto::Envelope>) -> BTreeMap<String, Vec<u8>> {
    envs.iter()
        .map(|(app, env)| {
            (
                app.clone(),
                serde_json::to_vec_pretty(env).expect("envelope serializes"),
            )
        })
        .collect()
}

pub struct ControllerSource {
    cfg: ControllerSourceConfig,
    http: reqwest::Client,
    token: String,
    registered: bool,
    /// The last set received (or loaded from the cache at start).
    current: Option<DesiredSetBody>,
    /// This host's public key for sealed secrets, sent when registering.
    secret_key: slipway_proto::seal::HostPublicKey,
    /// Consecutive failures, for the backoff.
    failures: u32,
    poll_wait: Duration,
}

impl ControllerSource {
    /// Reads the token and the cached set (a corrupt cache is moved aside, not trusted).
    pub fn new(cfg: ControllerSourceConfig) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = cfg.url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!(
                "controller url `{}` must start with http:// or https://",
                cfg.url
            );
        }
        if cfg.host_id.is_empty() {
            bail!("controller source: host_id must not be empty");
        }
        let token = read_token(&cfg.token_file)?;
        std::fs::create_dir_all(&cfg.cache_dir)
            .with_context(|| format!("creating cache dir {}", cfg.cache_dir.display()))?;
        let current = load_cache(&cfg.cache_dir.join(CACHE_FILE));
        let secret_key = crate::host_key::load_or_create(&cfg.cache_dir)?.public();
        let http = http_client(cfg.ca_cert.as_deref())?;
        Ok(Self {
            cfg: ControllerSourceConfig { url, ..cfg },
            http,
            token,
            registered: false,
            current,
            secret_key,
            failures: 0,
            poll_wait: POLL_WAIT,
        })
    }

    /// Shorter long-polls, for tests.
    pub fn with_poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait;
        self
    }

    /// The set held now (from the last answer or the cache), if any.
    pub fn current(&self) -> Option<DesiredSet> {
        self.current
            .as_ref()
            .map(|b| DesiredSet::from_body(b, false))
    }

    /// Long-polls once; returns the desired set and its version. When the controller cannot
    /// be reached (or answers with an error) this waits a backoff with jitter and returns the
    /// cached set with `from_cache = true`; it errs only when there is no cached set at all.
    pub async fn next(&mut self) -> anyhow::Result<DesiredSet> {
        let e = match self.poll().await {
            Ok(set) => {
                self.failures = 0;
                return Ok(set);
            }
            Err(e) => e,
        };
        self.failures = self.failures.saturating_add(1);
        let delay = backoff(self.failures);
        let retry_in = humantime::format_duration(delay);
        let e = match e {
            PollError::Unreachable(e) => {
                tracing::warn!(controller = %self.cfg.url, error = %format!("{e:#}"), %retry_in, "controller unreachable; serving the last desired set");
                e
            }
            PollError::Answered(e) => {
                tracing::warn!(controller = %self.cfg.url, error = %format!("{e:#}"), %retry_in, "controller gave no desired set; serving the last one");
                e
            }
        };
        tokio::time::sleep(delay).await;
        match &self.current {
            Some(b) => Ok(DesiredSet::from_body(b, true)),
            None => Err(e.context("no desired set cached yet")),
        }
    }

    async fn poll(&mut self) -> Result<DesiredSet, PollError> {
        if !self.registered {
            self.register().await?;
        }
        let mut url = format!(
            "{}/v1/hosts/{}/desired?wait={}ms",
            self.cfg.url,
            self.cfg.host_id,
            self.poll_wait.as_millis()
        );
        if let Some(cur) = &self.current {
            url.push_str(&format!("&version={}", cur.version));
        }
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(self.poll_wait + POLL_SLACK)
            .send()
            .await
            .with_context(|| format!("long-polling {}", self.cfg.url))
            .map_err(PollError::Unreachable)?;
        match resp.status().as_u16() {
            304 => self
                .current
                .as_ref()
                .map(|b| DesiredSet::from_body(b, false))
                .context("controller answered 304 but no set is held")
                .map_err(PollError::Answered),
            200 => {
                let bytes = resp
                    .bytes()
                    .await
                    .context("reading the desired set")
                    .map_err(PollError::Unreachable)?;
                let body: DesiredSetBody = serde_json::from_slice(&bytes)
                    .context("the controller's desired set is malformed")
                    .map_err(PollError::Answered)?;
                // A set that cannot be kept on disk is still the controller's word: take it.
                if let Err(e) = save_cache(&self.cfg.cache_dir, &body) {
                    tracing::error!(error = %format!("{e:#}"), "desired set not cached; an agent restarted while the controller is down would serve an older one");
                }
                let set = DesiredSet::from_body(&body, false);
                tracing::info!(version = %body.version, apps = body.releases.len(), "desired set received");
                self.current = Some(body);
                Ok(set)
            }
            404 => {
                // The controller forgot us (new database?): register again next time.
                self.registered = false;
                Err(PollError::Answered(api_error(resp).await))
            }
            401 => {
                let e = api_error(resp)
                    .await
                    .context(refused_token(&self.cfg.host_id));
                self.reread_token();
                Err(PollError::Answered(e))
            }
            _ => Err(PollError::Answered(api_error(resp).await)),
        }
    }

    /// Reads the token file again (it may have been replaced); keeps the old token if not.
    fn reread_token(&mut self) {
        match read_token(&self.cfg.token_file) {
            Ok(t) => self.token = t,
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot re-read the agent token"),
        }
    }

    async fn register(&mut self) -> Result<(), PollError> {
        let req = RegisterRequest {
            labels: self.cfg.labels.clone(),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            secret_key: Some(self.secret_key.clone()),
        };
        let resp = self
            .http
            .post(format!(
                "{}/v1/hosts/{}/register",
                self.cfg.url, self.cfg.host_id
            ))
            .bearer_auth(&self.token)
            .timeout(CONNECT_TIMEOUT * 2)
            .json(&req)
            .send()
            .await
            .with_context(|| format!("registering with {}", self.cfg.url))
            .map_err(PollError::Unreachable)?;
        if !resp.status().is_success() {
            let unauthorized = resp.status().as_u16() == 401;
            let e = api_error(resp).await.context(format!(
                "registering host {} with {}",
                self.cfg.host_id, self.cfg.url
            ));
            if unauthorized {
                self.reread_token();
                return Err(PollError::Answered(
                    e.context(refused_token(&self.cfg.host_id)),
                ));
            }
            return Err(PollError::Answered(e));
        }
        tracing::info!(host = %self.cfg.host_id, controller = %self.cfg.url, "registered");
        self.registered = true;
        Ok(())
    }

    /// Posts one phase of one deploy. Errors (controller down, refused) are returned; the
    /// caller decides whether a missed report matters.
    pub async fn report(&self, status: &HostStatus) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!(
                "{}/v1/hosts/{}/status",
                self.cfg.url, self.cfg.host_id
            ))
            .bearer_auth(&self.token)
            .timeout(CONNECT_TIMEOUT * 2)
            .json(status)
            .send()
            .await
            .with_context(|| format!("reporting status to {}", self.cfg.url))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(api_error(resp).await.context(format!(
                "reporting {} seq {} {}",
                status.app,
                status.seq,
                status.phase.name()
            )))
        }
    }
}

/// Why one long-poll brought no set.
enum PollError {
    /// No answer: connection refused or reset, timed out, cut mid-answer.
    Unreachable(anyhow::Error),
    /// The controller answered, but not with a set: an error status or a malformed body.
    Answered(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn source(dir: &Path, url: String) -> ControllerSource {
        let token_file = dir.join("token");
        std::fs::write(&token_file, "swt_test\n").unwrap();
        ControllerSource::new(ControllerSourceConfig {
            url,
            host_id: "h1".into(),
            labels: BTreeMap::new(),
            token_file,
            cache_dir: dir.join("cache"),
            ca_cert: None,
        })
        .unwrap()
    }

    /// Only a controller that does not answer is "unreachable"; one that answers with an
    /// error is another matter, and says why.
    #[tokio::test]
    async fn an_answer_is_not_taken_for_an_unreachable_controller() {
        let d = tempfile::tempdir().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let mut src = source(d.path(), url);
        assert!(matches!(src.poll().await, Err(PollError::Unreachable(_))));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = r#"{"error":"host `h1` is not allowed here"}"#;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        let mut src = source(d.path(), url);
        match src.poll().await {
            Err(PollError::Answered(e)) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("403") && msg.contains("not allowed"), "{msg}");
            }
            Err(PollError::Unreachable(e)) => panic!("taken for unreachable: {e:#}"),
            Ok(_) => panic!("a 403 gave a set"),
        }
    }
}
