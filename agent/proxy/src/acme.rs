//! ACME (RFC 8555) certificates for apps with `tls = { acme = true }`: one certificate per
//! host, validated by HTTP-01 (answered on the shared HTTP listener) or TLS-ALPN-01 (RFC 8737,
//! answered on the HTTPS listener). Account, certificates and keys are stored atomically at
//! mode 0600 and reused after a restart; a certificate is renewed only when it nears expiry.
//! Issuing runs in the background: the app's HTTP route is live meanwhile, and a refusal is
//! logged and reported (naming the host) without touching what serves.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{error, info, warn};

use crate::defaults;
use crate::tls::{self, CertStore, Source};

/// Which ACME challenge the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `GET /.well-known/acme-challenge/TOKEN` on the shared HTTP listener (port 80).
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` on the shared HTTPS listener (port 443).
    TlsAlpn01,
}

impl std::str::FromStr for AcmeChallenge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(AcmeChallenge::Http01),
            "tls-alpn-01" => Ok(AcmeChallenge::TlsAlpn01),
            _ => Err(format!(
                "`{s}`: the ACME challenge is `http-01` or `tls-alpn-01`"
            )),
        }
    }
}

/// Where the proxy gets ACME certificates.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// Directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// PEM root trusted for the directory's own HTTPS (a test CA); None = the system's roots.
    pub ca_root: Option<PathBuf>,
    /// Account, certificates and keys (files at 0600).
    pub dir: PathBuf,
    /// Contact URLs for the account (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    pub challenge: AcmeChallenge,
    /// Renew a certificate this long before it expires.
    pub renew_before: Duration,
}

impl AcmeConfig {
    /// Defaults for `directory`, stored under `dir`.
    pub fn new(directory: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        AcmeConfig {
            directory: directory.into(),
            ca_root: None,
            dir: dir.into(),
            contact: Vec::new(),
            challenge: AcmeChallenge::Http01,
            renew_before: defaults::ACME_RENEW_BEFORE,
        }
    }
}

/// One app's ACME hosts and its last failure.
#[derive(Debug, Default)]
struct AcmeApp {
    hosts: Vec<String>,
    error: Option<String>,
    issuing: bool,
}

/// The ACME client of the proxy.
pub(crate) struct Acme {
    cfg: AcmeConfig,
    /// HTTP-01 token -> key authorization, answered on the shared HTTP listener.
    pub(crate) http01: ArcSwap<HashMap<String, String>>,
    certs: Arc<CertStore>,
    account: tokio::sync::Mutex<Option<Account>>,
    apps: Mutex<HashMap<String, AcmeApp>>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("directory", &self.cfg.directory)
            .finish()
    }
}

/// Writes `bytes` atomically at mode 0600 (temp + fsync + rename + dir fsync).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

impl Acme {
    pub(crate) fn new(cfg: AcmeConfig, certs: Arc<CertStore>) -> Self {
        Acme {
            cfg,
            http01: ArcSwap::default(),
            certs,
            account: tokio::sync::Mutex::new(None),
            apps: Mutex::default(),
        }
    }

    fn cert_path(&self, host: &str) -> (PathBuf, PathBuf) {
        let d = self.cfg.dir.join("certs");
        (d.join(format!("{host}.pem")), d.join(format!("{host}.key")))
    }

    /// The stored certificate of `host` if it is usable and not due for renewal.
    fn stored(&self, app: &str, host: &str) -> Option<Arc<CertifiedKey>> {
        let (c, k) = self.cert_path(host);
        if !c.exists() {
            return None;
        }
        let hosts = [host.to_owned()];
        let renew_at = SystemTime::now() + self.cfg.renew_before;
        match tls::load_files(app, &hosts, &c, &k) {
            Ok((ck, _)) if !expires_before(&ck, renew_at) => Some(ck),
            Ok(_) => {
                info!(app, host, "stored ACME certificate is due for renewal");
                None
            }
            Err(e) => {
                warn!(error = %e, "stored ACME certificate unusable; a new one will be issued");
                None
            }
        }
    }

    /// Last ACME failure of `app`, if its certificates are not all issued.
    pub(crate) fn error(&self, app: &str) -> Option<String> {
        self.apps
            .lock()
            .unwrap()
            .get(app)
            .and_then(|a| a.error.clone())
    }

    /// Serves `app`'s hosts with ACME certificates: the stored ones at once, the missing ones
    /// once issued (in the background).
    pub(crate) fn set_app(self: &Arc<Self>, app: &str, hosts: &[String]) {
        {
            let mut apps = self.apps.lock().unwrap();
            let a = apps.entry(app.to_owned()).or_default();
            if a.hosts == hosts && a.issuing {
                return;
            }
            a.hosts = hosts.to_vec();
        }
        let have: Vec<(String, Arc<CertifiedKey>)> = hosts
            .iter()
            .filter_map(|h| self.stored(app, h).map(|k| (h.clone(), k)))
            .collect();
        let complete = have.len() == hosts.len();
        self.certs.set_app(app, Source::Acme, have);
        if complete {
            info!(app, hosts = ?hosts, "ACME certificates loaded from storage");
            return;
        }
        self.spawn_issue(app);
    }

    fn spawn_issue(self: &Arc<Self>, app: &str) {
        {
            let mut apps = self.apps.lock().unwrap();
            match apps.get_mut(app) {
                Some(a) if !a.issuing => a.issuing = true,
                _ => return,
            }
        }
        let me = self.clone();
        let app = app.to_owned();
        tokio::spawn(async move { me.issue_app(&app).await });
    }

    /// Issues every host of `app` lacking a fresh certificate, then serves them all.
    async fn issue_app(self: Arc<Self>, app: &str) {
        let Some(hosts) = self.apps.lock().unwrap().get(app).map(|a| a.hosts.clone()) else {
            return;
        };
        let mut keys = Vec::new();
        let mut failure = None;
        for host in &hosts {
            if let Some(k) = self.stored(app, host) {
                keys.push((host.clone(), k));
                continue;
            }
            match self.issue(app, host).await {
                Ok(k) => keys.push((host.clone(), k)),
                Err(reason) => {
                    let msg = format!("app `{app}`: ACME certificate for `{host}`: {reason}");
                    error!("{msg}; retried in {:?}", defaults::ACME_CHECK_INTERVAL);
                    failure = Some(msg);
                    // Keep what serves now for this host.
                    if let Some(k) = self
                        .certs
                        .app_keys(app)
                        .into_iter()
                        .find(|(h, _)| h == host)
                    {
                        keys.push(k);
                    }
                }
            }
        }
        let mut apps = self.apps.lock().unwrap();
        let Some(a) = apps.get_mut(app) else { return };
        a.issuing = false;
        a.error = failure;
        if a.hosts == hosts {
            self.certs.set_app(app, Source::Acme, keys);
        }
    }

    /// Forgets `app` (its stored certificates stay for a later return).
    pub(crate) fn remove_app(&self, app: &str) {
        self.apps.lock().unwrap().remove(app);
    }

    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(a) = &*slot {
            return Ok(a.clone());
        }
        let builder = || match &self.cfg.ca_root {
            Some(root) => Account::builder_with_root(root)
                .map_err(|e| format!("ACME root {}: {e}", root.display())),
            None => Account::builder().map_err(|e| e.to_string()),
        };
        let path = self.cfg.dir.join("account.json");
        let account = match std::fs::read(&path) {
            Ok(bytes) => {
                let creds: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("account file {}: {e}", path.display()))?;
                builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(|e| format!("ACME directory {}: {e}", self.cfg.directory))?
            }
            Err(_) => {
                let contact: Vec<&str> = self.cfg.contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, creds) = builder()?
                    .create(&new, self.cfg.directory.clone(), None)
                    .await
                    .map_err(|e| {
                        format!(
                            "ACME directory {} refused a new account: {e}",
                            self.cfg.directory
                        )
                    })?;
                let json = serde_json::to_vec(&creds).expect("credentials serialize");
                write_private(&path, &json).map_err(|e| {
                    format!("cannot store the ACME account in {}: {e}", path.display())
                })?;
                info!(directory = %self.cfg.directory, "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// One order for one host: challenge, finalize, store.
    async fn issue(&self, app: &str, host: &str) -> Result<Arc<CertifiedKey>, String> {
        let account = self.account().await?;
        let ids = [Identifier::Dns(host.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("order refused: {e}"))?;
        let mut tokens = Vec::new();
        let mut authz = order.authorizations();
        while let Some(a) = authz.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            if a.status == AuthorizationStatus::Valid {
                continue;
            }
            let kind = match self.cfg.challenge {
                AcmeChallenge::Http01 => ChallengeType::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut ch = a
                .challenge(kind.clone())
                .ok_or_else(|| format!("the ACME server offers no {kind:?} challenge"))?;
            let key_auth = ch.key_authorization();
            match self.cfg.challenge {
                AcmeChallenge::Http01 => {
                    let mut m = (**self.http01.load()).clone();
                    m.insert(ch.token.clone(), key_auth.as_str().to_owned());
                    self.http01.store(Arc::new(m));
                    tokens.push(ch.token.clone());
                }
                AcmeChallenge::TlsAlpn01 => {
                    let ck = alpn_challenge_cert(host, key_auth.digest().as_ref())?;
                    let mut m = (**self.certs.challenges.load()).clone();
                    m.insert(host.into(), Arc::new(ck));
                    self.certs.challenges.store(Arc::new(m));
                }
            }
            ch.set_ready()
                .await
                .map_err(|e| format!("challenge refused: {e}"))?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(defaults::ACME_ORDER_TIMEOUT);
        let status = order.poll_ready(&retry).await;
        self.clear_challenges(host, &tokens);
        let status = status.map_err(|e| format!("validation: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!(
                "validation failed (order {status:?}); is {host} reachable on this proxy's {} listener?",
                match self.cfg.challenge {
                    AcmeChallenge::Http01 => "HTTP (port 80)",
                    AcmeChallenge::TlsAlpn01 => "HTTPS (port 443)",
                }
            ));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| format!("certificate download: {e}"))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("unreadable certificate from the ACME server: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("unreadable generated key: {e}"))?;
        let ck = tls::certified_key(chain, key, &[host.to_owned()], SystemTime::now())
            .map_err(|(_, r)| r)?;
        let (c, k) = self.cert_path(host);
        write_private(&k, key_pem.as_bytes())
            .and_then(|()| write_private(&c, chain_pem.as_bytes()))
            .map_err(|e| format!("cannot store it under {}: {e}", self.cfg.dir.display()))?;
        info!(app, host, "ACME certificate issued and stored");
        Ok(Arc::new(ck))
    }

    fn clear_challenges(&self, host: &str, tokens: &[String]) {
        if !tokens.is_empty() {
            let mut m = (**self.http01.load()).clone();
            for t in tokens {
                m.remove(t);
            }
            self.http01.store(Arc::new(m));
        }
        if self.certs.challenges.load().contains_key(host) {
            let mut m = (**self.certs.challenges.load()).clone();
            m.remove(host);
            self.certs.challenges.store(Arc::new(m));
        }
    }

    /// Renews certificates nearing expiry and retries failed ones, until aborted.
    pub(crate) async fn renew_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(defaults::ACME_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let apps: Vec<(String, Vec<String>)> = self
                .apps
                .lock()
                .unwrap()
                .iter()
                .map(|(n, a)| (n.clone(), a.hosts.clone()))
                .collect();
            for (app, hosts) in apps {
                if hosts.iter().any(|h| self.stored(&app, h).is_none()) {
                    self.spawn_issue(&app);
                }
            }
        }
    }
}

/// True when the leaf of `ck` expires before `t`.
fn expires_before(ck: &CertifiedKey, t: SystemTime) -> bool {
    let Some(leaf) = ck.cert.first() else {
        return true;
    };
    let Ok((_, x)) = x509_parser::parse_x509_certificate(leaf) else {
        return true;
    };
    let t = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    x.validity().not_after.timestamp() < t
}

/// The self-signed TLS-ALPN-01 certificate for `host` carrying the key authorization digest.
fn alpn_challenge_cert(host: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let mut p = rcgen::CertificateParams::new(vec![host.to_owned()])
        .map_err(|e| format!("challenge certificate: {e}"))?;
    p.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("challenge key: {e}"))?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("challenge certificate: {e}"))?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_written_whole_at_0600() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("certs/a.key");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn challenge_names_parse() {
        assert_eq!(
            "http-01".parse::<AcmeChallenge>().unwrap(),
            AcmeChallenge::Http01
        );
        assert!("dns-01"
            .parse::<AcmeChallenge>()
            .unwrap_err()
            .contains("dns-01"));
    }
}
