//! Starting and stopping the controller: store, signer, resolver, publisher, re-signer and the
//! HTTP(S) listener, with graceful shutdown.

use crate::api::{self, AppState, Metrics};
use crate::config::Config;
use crate::publish::Publisher;
use crate::release::{AppLocks, ReleaseSigner};
use crate::resolve::Resolver;
use crate::store::{self, StoreError};
use crate::{defaults, resign, signer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] crate::signer::SignError),
    #[error("rollouts: {0}")]
    Rollout(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Gitops(#[from] crate::gitops::GitopsError),
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running controller.
pub struct Running {
    /// Where it listens (the real port when the config said port 0).
    pub addr: SocketAddr,
    pub tls: bool,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    resigner: JoinHandle<()>,
    gitops: Option<JoinHandle<()>>,
    rollout_tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Base URL, e.g. `http://127.0.0.1:7440`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting, answers waiting long-polls, and waits (bounded) for requests to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.resigner.await;
        if let Some(g) = self.gitops {
            // A sync in progress finishes its current git command or release first.
            let _ = tokio::time::timeout(defaults::SHUTDOWN_GRACE, g).await;
        }
        for t in self.rollout_tasks {
            let _ = tokio::time::timeout(defaults::SHUTDOWN_GRACE, t).await;
        }
        match tokio::time::timeout(defaults::SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server ended with an error"),
            Ok(_) => {}
            Err(_) => tracing::warn!("requests still running after the shutdown grace period"),
        }
    }

    /// Waits until the server ends (after [`Running::shutdown`] from elsewhere, or an error).
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens everything the config names and starts serving.
pub async fn start(cfg: &Config) -> Result<Running, ServeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| ServeError::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let key = signer::load_key(&cfg.signing_key)?;
    tracing::info!(key_id = %key.public_key().id(), "signing key loaded");
    let store = store::open(&cfg.database_url()).await?;
    let publisher = Arc::new(Publisher::load(store.as_ref()).await?);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let state = AppState {
        store,
        publisher,
        resolver: Arc::new(Resolver::new(&cfg.registry)),
        signer: Arc::new(ReleaseSigner {
            key,
            key_set_version: cfg.key_set_version,
            validity: cfg.release_validity,
        }),
        locks: Arc::new(AppLocks::default()),
        metrics: Arc::new(Metrics::default()),
        rollouts: Arc::new(crate::rollout::Rollouts::new(
            cfg.rollout.clone(),
            cfg.long_poll_max_wait,
            cfg.host_down_after,
        )),
        shutdown: shutdown_rx.clone(),
        events: Arc::default(),
        log_relay: Arc::default(),
        ui: Arc::new(crate::ui::Sessions::with_ttl(
            cfg.tls.is_some() || cfg.allow_plain_http,
            cfg.ui.session_ttl,
        )),
        master_key: Some(Arc::new(
            crate::secrets::load_or_create_master_key(&cfg.secrets_master_key_path())
                .map_err(|e| ServeError::Secrets(format!("{e:#}")))?,
        )),
        tls_ca: match &cfg.tls {
            Some(t) => Some(Arc::new(tls_ca(t.ca.as_deref().unwrap_or(&t.cert))?)),
            None => None,
        },
        gitops: match &cfg.gitops {
            Some(g) => Some(Arc::new(crate::gitops::GitOps::open(g, &cfg.data_dir)?)),
            None => None,
        },
    };
    crate::rollout::init(&state)
        .await
        .map_err(|e| ServeError::Rollout(e.to_string()))?;
    let tcp = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    // One router for every connection: cloning it shares its route table.
    let app = api::router(state.clone());
    let server = match &cfg.tls {
        None => tokio::spawn(serve(tcp, app, shutdown_rx.clone())),
        Some(tls) => {
            let acceptor = tls_acceptor(&tls.cert, &tls.key)?;
            let listener = TlsListener::new(tcp, acceptor, addr);
            tokio::spawn(serve(listener, app, shutdown_rx.clone()))
        }
    };
    let (rollout_view, rollout_driver) = crate::rollout::spawn(state.clone(), shutdown_rx.clone());
    let gitops = state.gitops.clone().map(|g| {
        tracing::info!(url = %g.cfg.url, branch = %g.cfg.branch, "GitOps sync enabled");
        tokio::spawn(g.run(state.clone(), shutdown_rx.clone()))
    });
    tokio::spawn(crate::events::prune(state.clone(), shutdown_rx.clone()));
    crate::notify::spawn(&state, cfg.notify.clone(), shutdown_rx.clone());
    let resigner = tokio::spawn(resign::run(
        state.clone(),
        cfg.resign_before,
        cfg.resign_interval,
        shutdown_rx,
    ));
    tracing::info!(%addr, tls = cfg.tls.is_some(), "controller listening");
    Ok(Running {
        addr,
        tls: cfg.tls.is_some(),
        state,
        shutdown,
        server,
        resigner,
        gitops,
        rollout_tasks: vec![rollout_view, rollout_driver],
    })
}

/// Serves `app` on every connection `listener` accepts (HTTP/1.1, and HTTP/2 when the client
/// asks for it) until `stop` turns true; then stops accepting, lets each connection finish
/// its request in flight, and returns once all have closed.
async fn serve<L>(
    mut listener: L,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    // Dropped to tell connections to close; each connection holds a receiver of `open_rx`
    // until it ends.
    let (close_tx, close_rx) = watch::channel(());
    let (open_tx, open_rx) = watch::channel(());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(crate::defaults::MAX_REQUEST_HEAD);
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    loop {
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = stop.wait_for(|s| *s) => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let (builder, mut close, open) = (builder.clone(), close_rx.clone(), open_rx.clone());
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = close.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(close_tx);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// The CA joining agents pin: the last certificate of the chain (the root or the highest
/// one given; a self-signed certificate is its own).
fn tls_ca(cert: &std::path::Path) -> Result<crate::api::TlsCa, ServeError> {
    use base64::Engine;
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    let last = certs.last().ok_or_else(|| {
        ServeError::Tls(format!("certificate {}: no certificate", cert.display()))
    })?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(last.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    Ok(crate::api::TlsCa {
        pem: format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        ),
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, last.as_ref())),
    })
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, ServeError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("private key {}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and hands over those whose TLS handshake completed; handshakes
/// run concurrently so one slow client cannot hold up the others.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

/// A TLS handshake that has not finished by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor, addr: SocketAddr) -> Self {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, conn_tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = conn_tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Self { rx, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
