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

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use slipway_proto::api::{DesiredSetBody, ErrorBody, HostStatus, RegisterRequest};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    /// True when the controller could not be reached and this came from the on-disk cache.
    pub from_cache: bool,
}

impl DesiredSet {
    fn from_body(body: &DesiredSetBody, from_cache: bool) -> Self {
        Self {
            version: body.version.clone(),
            releases: body
                .releases
                .iter()
                .map(|(app, env)| {
                    (
                        app.clone(),
                        serde_json::to_vec_pretty(env).expect("envelope serializes"),
                    )
                })
                .collect(),
            secrets: body.secrets.clone(),
            from_cache,
        }
    }
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

pub(crate) fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("reading agent token file {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("agent token file {} is empty", path.display());
    }
    Ok(t)
}

/// The client agents speak to the controller with: the system's roots, and `ca_cert`'s
/// certificates when given.
pub fn http_client(ca_cert: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading controller ca_cert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "controller ca_cert {}: not PEM certificates",
                path.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "controller ca_cert {}: no certificate in it",
                path.display()
            );
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("building the HTTP client")
}

/// What a 401 means for this host, and what the operator can do.
fn refused_token(host: &impl std::fmt::Display) -> String {
    format!(
        "the controller refused host {host}'s agent token (401): the host was removed \
         (`slipway hosts remove`) or its token revoked; give it a new agent token in \
         token_file, or join it again (`slipway-agent join`)"
    )
}

pub(crate) async fn api_error(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let msg = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
    anyhow::anyhow!("controller answered {}: {msg}", status.as_u16())
}

/// Exponential backoff with jitter: between half and all of min * 2^(failures-1), capped.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let full = exp.min(BACKOFF_MAX);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    full.mul_f64(jitter)
}

/// Loads the cached set; a cache that does not parse is moved aside and ignored (loudly).
fn load_cache(path: &Path) -> Option<DesiredSetBody> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read the cached desired set");
            return None;
        }
    };
    match serde_json::from_slice::<DesiredSetBody>(&bytes) {
        Ok(b) => Some(b),
        Err(e) => {
            let aside = path.with_extension(format!(
                "corrupt-{}",
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ));
            let _ = std::fs::rename(path, &aside);
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                error = %e,
                "cached desired set is corrupt; moved aside, waiting for the controller"
            );
            None
        }
    }
}

/// Writes the set atomically: temp file, fsync, rename, fsync of the directory.
fn save_cache(dir: &Path, body: &DesiredSetBody) -> anyhow::Result<()> {
    let path = dir.join(CACHE_FILE);
    let tmp = dir.join(format!(".{CACHE_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(body).expect("desired set serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("writing the desired set cache {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for n in 1..40 {
            let d = backoff(n);
            assert!(d <= BACKOFF_MAX, "{n}: {d:?}");
            assert!(d >= BACKOFF_MIN / 2, "{n}: {d:?}");
        }
        assert!(backoff(20) >= BACKOFF_MAX / 2);
    }

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

    #[test]
    fn corrupt_cache_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(CACHE_FILE);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(load_cache(&p).is_none());
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let body = DesiredSetBody {
            version: "v".into(),
            releases: BTreeMap::new(),
            ..Default::default()
        };
        save_cache(d.path(), &body).unwrap();
        assert_eq!(load_cache(&p), Some(body));
    }
}
