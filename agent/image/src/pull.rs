//! Pulling an image by digest: manifest (checked against the pinned digest), platform
//! choice out of an index, config, then every missing layer downloaded and unpacked in
//! parallel (bounded). Layers already unpacked in the store are not fetched again.

use crate::error::ImageError;
use crate::manifest::{self, BlobRef, Compression, Document, Manifest};
use crate::metrics::ImageMetrics;
use crate::registry::{RegistryConfig, Repository, Session};
use crate::store::Store;
use crate::unpack::{self, Limits};
use crate::{defaults, fetch};
use futures_util::{stream, StreamExt};
use oci_spec::image::ImageConfiguration;
use serde::Serialize;
use slipway_proto::{Digest, ImageRef};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A pulled (or loaded) image: everything needed to build a rootfs and a runtime config.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub image: ImageRef,
    /// The image manifest's digest (the index child's, when `image` names an index).
    pub manifest_digest: Digest,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, base layer first: overlayfs `lowerdir`s in reverse order.
    pub layer_dirs: Vec<PathBuf>,
    pub report: PullReport,
}

/// What a pull did: layers fetched vs found cached, bytes fetched, seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullReport {
    pub layers_fetched: usize,
    pub layers_cached: usize,
    /// Blob bytes downloaded (manifest, config and layers).
    pub bytes_fetched: u64,
    /// Device nodes the unpacked layers carried and that were skipped.
    pub devices_skipped: u64,
    pub seconds: f64,
    pub layers: Vec<LayerReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub compression: Compression,
    pub fetched: bool,
    /// Device nodes skipped while unpacking (0 for cached layers).
    pub devices_skipped: u64,
}

impl PullReport {
    pub(crate) fn all_cached(m: &Manifest, diff_ids: &[Digest]) -> PullReport {
        PullReport {
            layers_cached: m.layers.len(),
            layers: m
                .layers
                .iter()
                .zip(diff_ids)
                .map(|((b, c), d)| LayerReport {
                    digest: b.digest.clone(),
                    diff_id: d.clone(),
                    size: b.size,
                    compression: *c,
                    fetched: false,
                    devices_skipped: 0,
                })
                .collect(),
            ..PullReport::default()
        }
    }
}

/// Observer of a pull's progress (the CLI draws progress bars with it).
pub trait Progress: Send + Sync {
    /// A layer will be downloaded.
    fn layer_started(&self, _layer: &Digest, _size: u64) {}
    /// `n` more bytes of the layer arrived.
    fn layer_bytes(&self, _layer: &Digest, _n: u64) {}
    /// Download verified; unpacking starts.
    fn layer_unpacking(&self, _layer: &Digest) {}
    /// The layer is unpacked and in the store.
    fn layer_done(&self, _layer: &Digest) {}
    /// The layer was already in the store.
    fn layer_cached(&self, _layer: &Digest, _size: u64) {}
}

struct NoProgress;
impl Progress for NoProgress {}

/// Pulls images by digest into a [`Store`].
pub struct Puller {
    store: Store,
    cfg: RegistryConfig,
    limits: Limits,
    concurrency: usize,
    metrics: Arc<ImageMetrics>,
    progress: Arc<dyn Progress>,
    /// Sessions of recent pulls by registry, with when they were opened (see
    /// [`defaults::SESSION_REUSE`]).
    sessions: Mutex<HashMap<String, (Arc<Session>, Instant)>>,
}

/// The registry session of one pull: opened, or taken from the puller's recent sessions, on
/// first use, so a pull whose manifest, config and layers are all stored never reaches the
/// registry.
struct PullSession<'a> {
    puller: &'a Puller,
    repo: &'a Repository,
    session: tokio::sync::OnceCell<Arc<Session>>,
}

impl PullSession<'_> {
    async fn get(&self) -> Result<&Session, ImageError> {
        self.session
            .get_or_try_init(|| self.puller.session(self.repo))
            .await
            .map(|s| s.as_ref())
    }
}

impl Puller {
    pub fn new(store: Store, cfg: RegistryConfig) -> Puller {
        Puller {
            store,
            cfg,
            limits: Limits::default(),
            concurrency: defaults::MAX_CONCURRENT_DOWNLOADS,
            metrics: Arc::new(ImageMetrics::default()),
            progress: Arc::new(NoProgress),
            sessions: Mutex::default(),
        }
    }

    /// A session to `repo`'s registry: one opened less than [`defaults::SESSION_REUSE`] ago
    /// (its connections and tokens are reused), else a new one, which looks up the
    /// credentials and TLS settings again.
    async fn session(&self, repo: &Repository) -> Result<Arc<Session>, ImageError> {
        let registry = &repo.registry;
        if let Some((s, opened)) = self.sessions.lock().expect("sessions lock").get(registry) {
            if opened.elapsed() < defaults::SESSION_REUSE {
                return Ok(s.clone());
            }
        }
        let session = Session::open(&self.cfg, registry, None)
            .await
            .map_err(|failure| ImageError::Registry {
                what: "credentials and TLS settings".into(),
                repository: repo.to_string(),
                registry: registry.clone(),
                failure,
            })?;
        let session = Arc::new(session);
        self.sessions
            .lock()
            .expect("sessions lock")
            .insert(registry.clone(), (session.clone(), Instant::now()));
        Ok(session)
    }

    /// Caps on unpacked size, entries and path length (defaults in `defaults`).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How many layers download at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Report into these (registered) metrics instead of private ones.
    pub fn with_metrics(mut self, metrics: Arc<ImageMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &ImageMetrics {
        &self.metrics
    }

    /// Pulls `image` (an image manifest or an index) and unpacks its layers. Nothing that
    /// fails verification (digest, size, document checks, layer safety, diff_id) reaches
    /// `blobs/` or `layers/`; temp files are removed.
    pub async fn pull(&self, image: &ImageRef) -> Result<PulledImage, ImageError> {
        let started = Instant::now();
        let store = self.store.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock(false))
            .await
            .map_err(|e| ImageError::Config(format!("store lock task: {e}")))??;
        let result = self.pull_locked(image).await;
        match &result {
            Ok(p) => {
                self.metrics
                    .pull_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(image = %image, fetched = p.report.layers_fetched, cached = p.report.layers_cached,
                    bytes = p.report.bytes_fetched, "pulled");
            }
            Err(e) => {
                // The next pull reads credentials and TLS settings afresh: they may be what
                // failed, and the operator may have fixed them since.
                let registry = Repository::parse(&image.repository).registry;
                self.sessions
                    .lock()
                    .expect("sessions lock")
                    .remove(&registry);
                self.metrics.failure(e.reason_label());
            }
        }
        result.map(|mut p| {
            p.report.seconds = started.elapsed().as_secs_f64();
            p
        })
    }

    async fn pull_locked(&self, image: &ImageRef) -> Result<PulledImage, ImageError> {
        let repo = Repository::parse(&image.repository);
        // One session serves every request of the pull, so each carries its credentials.
        let session = PullSession {
            puller: self,
            repo: &repo,
            session: tokio::sync::OnceCell::new(),
        };
        let mut bytes_fetched = 0u64;

        let (bytes, n) = self.manifest_bytes(&session, &repo, &image.digest).await?;
        bytes_fetched += n;
        let (manifest_digest, manifest) = match manifest::parse_document(&image.digest, &bytes)? {
            Document::Manifest(m) => (image.digest.clone(), m),
            Document::Index(entries) => {
                let child = manifest::select_platform(&image.digest, &entries)?;
                let (bytes, n) = self.manifest_bytes(&session, &repo, &child.digest).await?;
                bytes_fetched += n;
                match manifest::parse_document(&child.digest, &bytes)? {
                    Document::Manifest(m) => (child.digest, m),
                    Document::Index(_) => {
                        return Err(ImageError::Rejected {
                            kind: "index",
                            digest: image.digest.clone(),
                            reason: format!("platform entry {} is itself an index", child.digest),
                        })
                    }
                }
            }
        };

        let config_blob = &manifest.config;
        if !self.store.has_blob(&config_blob.digest) {
            let (tmp, n) = fetch::blob(
                session.get().await?,
                &repo,
                &self.store,
                "config",
                config_blob,
                &|_| {},
            )
            .await?;
            self.store.commit_blob(tmp, &config_blob.digest)?;
            bytes_fetched += n;
        }
        let config_bytes = self
            .store
            .read_blob("config", &config_blob.digest, defaults::MAX_CONFIG_BYTES)?
            .ok_or_else(|| ImageError::Corrupt {
                path: self.store.blob_path(&config_blob.digest),
                reason: "config vanished after download".into(),
            })?;
        let (config, diff_ids) =
            manifest::parse_config(&config_blob.digest, &config_bytes, manifest.layers.len())?;
        manifest::check_platform(&config_blob.digest, &config)?;

        // Unique layers by diff_id; an image may repeat one (e.g. empty layers).
        let mut todo: Vec<(BlobRef, Compression, Digest)> = Vec::new();
        let mut report = PullReport::all_cached(&manifest, &diff_ids);
        report.layers_cached = 0;
        for (i, ((blob, comp), diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
            if self.store.has_layer(diff_id) {
                report.layers_cached += 1;
                self.metrics.layer(false);
                self.progress.layer_cached(&blob.digest, blob.size);
            } else if !todo.iter().any(|(_, _, d)| d == diff_id) {
                todo.push((blob.clone(), *comp, diff_id.clone()));
                report.layers[i].fetched = true;
            }
        }
        // Futures collected first: a closure in the stream's type defeats `Send` inference for
        // callers that spawn the pull (higher-ranked lifetime error).
        let layer_futures: Vec<_> = todo
            .iter()
            .map(|(b, c, d)| self.layer(&session, &repo, b, *c, d))
            .collect();
        // Every started layer task is awaited, even after a failure, so that a failed pull
        // returns only once its temp files and dirs are gone.
        let results: Vec<Result<(u64, u64), ImageError>> = stream::iter(layer_futures)
            .buffered(self.concurrency)
            .collect()
            .await;
        let fetched = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        for ((blob, _, _), (_, devices)) in todo.iter().zip(&fetched) {
            for l in report.layers.iter_mut().filter(|l| l.digest == blob.digest) {
                l.devices_skipped = *devices;
            }
        }
        report.layers_fetched = todo.len();
        report.bytes_fetched = bytes_fetched + fetched.iter().map(|(n, _)| n).sum::<u64>();
        report.devices_skipped = fetched.iter().map(|(_, d)| d).sum();

        let layer_dirs = diff_ids.iter().map(|d| self.store.layer_path(d)).collect();
        Ok(PulledImage {
            image: image.clone(),
            manifest_digest,
            config,
            layer_dirs,
            report,
        })
    }

    /// Manifest bytes from the store (re-verified) or the registry. Returns bytes fetched.
    async fn manifest_bytes(
        &self,
        session: &PullSession<'_>,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<(Vec<u8>, u64), ImageError> {
        if let Ok(Some(bytes)) =
            self.store
                .read_blob("manifest", digest, defaults::MAX_MANIFEST_BYTES)
        {
            return Ok((bytes, 0));
        }
        let bytes = fetch::manifest(
            session.get().await?,
            repo,
            digest,
            manifest::ACCEPTED_MANIFESTS,
        )
        .await?;
        // Checked before storing: a document we refuse never reaches `blobs/`.
        manifest::parse_document(digest, &bytes)?;
        self.store.write_blob(digest, &bytes)?;
        let n = bytes.len() as u64;
        Ok((bytes, n))
    }

    /// Downloads (unless the blob is stored) and unpacks one layer. Returns bytes fetched
    /// and device nodes skipped.
    async fn layer(
        &self,
        session: &PullSession<'_>,
        repo: &Repository,
        blob: &BlobRef,
        compression: Compression,
        diff_id: &Digest,
    ) -> Result<(u64, u64), ImageError> {
        let mut fetched = 0;
        let mut downloaded = None;
        if !self.store.has_blob(&blob.digest) {
            self.progress.layer_started(&blob.digest, blob.size);
            let progress = self.progress.clone();
            let metrics = self.metrics.clone();
            let d = blob.digest.clone();
            let on_bytes = move |n: u64| {
                progress.layer_bytes(&d, n);
                metrics.pulled_bytes.inc_by(n);
            };
            let (tmp, n) = fetch::blob(
                session.get().await?,
                repo,
                &self.store,
                "layer",
                blob,
                &on_bytes,
            )
            .await?;
            fetched = n;
            downloaded = Some(tmp);
        } else {
            self.progress.layer_started(&blob.digest, 0);
        }
        self.progress.layer_unpacking(&blob.digest);
        let started = Instant::now();
        let store = self.store.clone();
        let limits = self.limits;
        let (blob_c, diff_c) = (blob.clone(), diff_id.clone());
        let devices = tokio::task::spawn_blocking(move || {
            unpack_into_store(&store, &blob_c, compression, &diff_c, &limits, downloaded)
        })
        .await
        .map_err(|e| ImageError::Config(format!("unpack task for layer {}: {e}", blob.digest)))??;
        self.metrics
            .unpack_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.layer(true);
        self.progress.layer_done(&blob.digest);
        Ok((fetched, devices))
    }
}

/// Unpacks a layer into `tmp/`, then renames blob and layer dir to their final names. The
/// blob comes from `downloaded` (a verified temp file) or, if `None`, from the store. A
/// refused layer leaves neither blob nor layer dir behind. Returns device nodes skipped.
fn unpack_into_store(
    store: &Store,
    blob: &BlobRef,
    compression: Compression,
    diff_id: &Digest,
    limits: &Limits,
    downloaded: Option<tempfile::NamedTempFile>,
) -> Result<u64, ImageError> {
    if store.has_layer(diff_id) {
        if let Some(tmp) = downloaded {
            store.commit_blob(tmp, &blob.digest)?;
        }
        return Ok(0);
    }
    if downloaded.is_none() {
        // A blob left by an earlier pull: re-check it before trusting it.
        let path = store.blob_path(&blob.digest);
        let mut f = unpack::open_blob(&path)?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(ImageError::io(&path))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        let seen = hex::encode(ctx.finish());
        if seen != blob.digest.hex() {
            let _ = std::fs::remove_file(&path);
            return Err(ImageError::Corrupt {
                path,
                reason: format!(
                    "layer {} on disk hashes to sha256:{seen}; removed it, pull again",
                    blob.digest
                ),
            });
        }
    }
    let dir = store.temp_dir(diff_id)?;
    let source = match &downloaded {
        Some(tmp) => tmp.path().to_path_buf(),
        None => store.blob_path(&blob.digest),
    };
    let file = unpack::open_blob(&source)?;
    let unpacked =
        unpack::unpack_layer(file, compression, &blob.digest, diff_id, dir.path(), limits)?;
    if let Some(tmp) = downloaded {
        store.commit_blob(tmp, &blob.digest)?;
    }
    store.commit_layer(dir, diff_id, unpacked.entries)?;
    Ok(unpacked.devices_skipped)
}
