//! TLS termination on the shared HTTPS listener (rustls, ring provider): one certificate per
//! host, chosen by SNI from a map swapped whole on every change (no lock per handshake).
//! Certificates come from PEM files (checked on load, reloaded when the files change) or from
//! ACME (`acme`). A certificate that does not match its key, has expired, or does not cover
//! the app's hosts is refused with the host named; what was serving keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, error, info};

use crate::conn::Conn;
use crate::defaults;
use crate::error::ProxyError;

/// ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

type KeyMap = HashMap<Box<str>, Arc<CertifiedKey>>;
/// Host (as routed) -> its certificate.
pub(crate) type HostKeys = Vec<(String, Arc<CertifiedKey>)>;
/// Modification times of a certificate file and its key, to notice changes.
pub(crate) type Stamp = Option<(SystemTime, SystemTime)>;

/// A certificate-file source to check for changes.
struct FileWatch {
    app: String,
    cert: PathBuf,
    key: PathBuf,
    hosts: Vec<String>,
    stamp: Stamp,
}

/// Where an app's certificate comes from, and the file stamps it was last read at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Files {
        cert: PathBuf,
        key: PathBuf,
        stamp: Stamp,
    },
    Acme,
}

#[derive(Debug)]
struct AppCerts {
    source: Source,
    /// Host (as routed, `*.x` for wildcards) -> its certificate.
    keys: Vec<(String, Arc<CertifiedKey>)>,
}

/// Every certificate the HTTPS listener serves.
#[derive(Debug, Default)]
pub(crate) struct CertStore {
    /// Read per handshake; rebuilt from `apps` on every change.
    by_host: ArcSwap<KeyMap>,
    /// TLS-ALPN-01 challenge certificates, by host (ACME).
    pub(crate) challenges: ArcSwap<KeyMap>,
    apps: Mutex<HashMap<String, AppCerts>>,
    /// Whose certificate a client without SNI gets (lowercase); None: its handshake fails.
    default_host: Option<String>,
}

impl CertStore {
    pub(crate) fn with_default_host(host: Option<String>) -> Self {
        CertStore {
            default_host: host.map(|h| h.to_ascii_lowercase()),
            ..CertStore::default()
        }
    }

    fn rebuild(&self, apps: &HashMap<String, AppCerts>) {
        let map: KeyMap = apps
            .values()
            .flat_map(|a| a.keys.iter())
            .map(|(h, k)| (h.as_str().into(), k.clone()))
            .collect();
        self.by_host.store(Arc::new(map));
    }

    /// Serves `keys` for `app` from now on (replacing what it had).
    pub(crate) fn set_app(
        &self,
        app: &str,
        source: Source,
        keys: Vec<(String, Arc<CertifiedKey>)>,
    ) {
        let mut apps = self.apps.lock().unwrap();
        apps.insert(app.to_owned(), AppCerts { source, keys });
        self.rebuild(&apps);
    }

    /// Stops serving `app`'s certificates.
    pub(crate) fn remove_app(&self, app: &str) {
        let mut apps = self.apps.lock().unwrap();
        if apps.remove(app).is_some() {
            self.rebuild(&apps);
        }
    }

    /// The hosts whose certificate `app` holds now, with it.
    pub(crate) fn app_keys(&self, app: &str) -> HostKeys {
        let apps = self.apps.lock().unwrap();
        apps.get(app).map(|a| a.keys.clone()).unwrap_or_default()
    }

    /// Re-reads certificate files whose modification time changed. A file that now fails
    /// its checks is reported (naming the app and host) and the loaded certificate stays.
    pub(crate) fn reload_changed(&self) {
        let work: Vec<FileWatch> = {
            let apps = self.apps.lock().unwrap();
            apps.iter()
                .filter_map(|(name, a)| match &a.source {
                    Source::Files { cert, key, stamp } => Some(FileWatch {
                        app: name.clone(),
                        cert: cert.clone(),
                        key: key.clone(),
                        hosts: a.keys.iter().map(|(h, _)| h.clone()).collect(),
                        stamp: *stamp,
                    }),
                    Source::Acme => None,
                })
                .collect()
        };
        for FileWatch {
            app,
            cert,
            key,
            hosts,
            stamp,
        } in work
        {
            let now = stamps(&cert, &key);
            if now.is_none() || now == stamp {
                continue;
            }
            match load_files(&app, &hosts, &cert, &key) {
                Ok((k, stamp)) => {
                    info!(app, cert = %cert.display(), "certificate reloaded");
                    let keys = hosts.into_iter().map(|h| (h, k.clone())).collect();
                    let source = Source::Files { cert, key, stamp };
                    let mut apps = self.apps.lock().unwrap();
                    if let Some(a) = apps.get_mut(&app) {
                        *a = AppCerts { source, keys };
                        self.rebuild(&apps);
                    }
                }
                Err(e) => {
                    error!(error = %e, "certificate files changed but cannot be used; still serving the previous certificate");
                    // Report a bad file once, not every poll.
                    let mut apps = self.apps.lock().unwrap();
                    if let Some(a) = apps.get_mut(&app) {
                        if let Source::Files { stamp, .. } = &mut a.source {
                            *stamp = now;
                        }
                    }
                }
            }
        }
    }

    /// Polls certificate files for changes until the task is aborted.
    pub(crate) async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(defaults::CERT_RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.clone();
            let _ = tokio::task::spawn_blocking(move || store.reload_changed()).await;
        }
    }
}

fn stamps(cert: &Path, key: &Path) -> Stamp {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

/// Reads and checks a PEM certificate chain and key for `hosts` of `app`.
pub(crate) fn load_files(
    app: &str,
    hosts: &[String],
    cert: &Path,
    key: &Path,
) -> Result<(Arc<CertifiedKey>, Stamp), ProxyError> {
    let host = hosts.first().cloned().unwrap_or_default();
    let err = |reason: String| ProxyError::Certificate {
        app: app.to_owned(),
        host: host.clone(),
        reason,
    };
    let stamp = stamps(cert, key);
    let cert_pem =
        std::fs::read(cert).map_err(|e| err(format!("cannot read {}: {e}", cert.display())))?;
    let key_pem =
        std::fs::read(key).map_err(|e| err(format!("cannot read {}: {e}", key.display())))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            err(format!(
                "{} is not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| err(format!("{} is not a PEM private key: {e}", key.display())))?;
    let ck = certified_key(chain, key_der, hosts, SystemTime::now()).map_err(|(h, r)| {
        ProxyError::Certificate {
            app: app.to_owned(),
            host: h,
            reason: format!("{} ({}): {r}", cert.display(), key.display()),
        }
    })?;
    Ok((Arc::new(ck), stamp))
}

/// Builds and checks a certificate for `hosts`: the key signs for the leaf, the leaf is valid
/// at `now` and covers every host. Errors name the host concerned.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    hosts: &[String],
    now: SystemTime,
) -> Result<CertifiedKey, (String, String)> {
    let first = hosts.first().cloned().unwrap_or_default();
    let Some(leaf) = chain.first() else {
        return Err((first, "the file holds no certificate".into()));
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| (first.clone(), format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain.clone(), signing);
    ck.keys_match().map_err(|_| {
        (
            first.clone(),
            "the certificate does not match its private key".into(),
        )
    })?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| (first.clone(), format!("unreadable certificate: {e}")))?;
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    let v = x509.validity();
    if v.not_after.timestamp() < unix(now) {
        return Err((first, format!("the certificate expired on {}", v.not_after)));
    }
    if v.not_before.timestamp() > unix(now) {
        return Err((
            first,
            format!("the certificate is not valid before {}", v.not_before),
        ));
    }
    let names = dns_names(&x509);
    for h in hosts {
        if !names.iter().any(|n| covers(n, h)) {
            return Err((
                h.clone(),
                format!(
                    "the certificate does not cover it (it names {})",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(ck)
}

/// The leaf's DNS names (subject alternative names).
fn dns_names(x509: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push(d.to_ascii_lowercase());
            }
        }
    }
    out
}

/// True when certificate name `name` covers routed host `host` (`*.x` covers one label).
fn covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    match (name.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => label != "*" && rest == suffix,
        _ => false,
    }
}

/// Picks the certificate by SNI: exact name, then the wildcard of its parent; the challenge
/// certificate when the client asks for TLS-ALPN-01. A client without SNI gets the default
/// host's certificate, if one is set.
#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = match hello.server_name() {
            Some(n) => n.to_ascii_lowercase(),
            None => self.0.default_host.clone()?,
        };
        let acme = hello
            .alpn()
            .is_some_and(|mut a| a.any(|p| p == ACME_TLS_ALPN));
        if acme {
            return self.0.challenges.load().get(name.as_str()).cloned();
        }
        let map = self.0.by_host.load();
        if let Some(k) = map.get(name.as_str()) {
            return Some(k.clone());
        }
        let (_, parent) = name.split_once('.')?;
        map.get(format!("*.{parent}").as_str()).cloned()
    }
}

/// The HTTPS listener's rustls configuration (ring provider; ALPN h2, http/1.1, acme-tls/1).
pub(crate) fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Arc::new(c)
}

/// Runs the TLS handshake of a client connection; None when it failed (logged) or only
/// answered an ACME TLS-ALPN-01 challenge.
pub(crate) async fn handshake(stream: TcpStream, conn: &Conn) -> Option<TlsStream<TcpStream>> {
    let accept = conn.ctx.tls.accept(stream);
    match tokio::time::timeout(defaults::TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(s)) => {
            if s.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                debug!(peer = %conn.peer, "answered a TLS-ALPN-01 challenge");
                return None;
            }
            Some(s)
        }
        Ok(Err(e)) => {
            debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(peer = %conn.peer, "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn make(names: &[&str], days: (i64, i64)) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = SystemTime::now();
        let at = |d: i64| {
            let t = if d >= 0 {
                now + Duration::from_secs(d as u64 * 86400)
            } else {
                now - Duration::from_secs((-d) as u64 * 86400)
            };
            rcgen::date_time_ymd(1970, 1, 1)
                + Duration::from_secs(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
        };
        p.not_before = at(days.0);
        p.not_after = at(days.1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
    }

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn good_certificate_covers_its_hosts() {
        let (c, k) = make(&["shop.example.com", "*.shop.example.com"], (-1, 30));
        let ok = certified_key(
            vec![c],
            k,
            &hosts(&[
                "shop.example.com",
                "eu.shop.example.com",
                "*.shop.example.com",
            ]),
            SystemTime::now(),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn bad_certificates_name_the_host() {
        let now = SystemTime::now();
        let (c, _) = make(&["shop.example.com"], (-1, 30));
        let (_, other_key) = make(&["shop.example.com"], (-1, 30));
        let e = certified_key(
            vec![c.clone()],
            other_key,
            &hosts(&["shop.example.com"]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.0, "shop.example.com");
        assert!(e.1.contains("does not match its private key"), "{e:?}");

        let (c, k) = make(&["shop.example.com"], (-30, -1));
        let e = certified_key(vec![c], k, &hosts(&["shop.example.com"]), now).unwrap_err();
        assert!(e.1.contains("expired"), "{e:?}");

        let (c, k) = make(&["shop.example.com"], (-1, 30));
        let e = certified_key(
            vec![c],
            k,
            &hosts(&["shop.example.com", "a.b.shop.example.com"]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.0, "a.b.shop.example.com");
        assert!(e.1.contains("does not cover"), "{e:?}");
    }
}
