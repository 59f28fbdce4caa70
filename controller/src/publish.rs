//! What is published: the newest signed release of every app. Publishing swaps the snapshot
//! and wakes every waiting long-poll, which then computes its host's desired set from memory.

use crate::store::{Store, StoreError};
use slipway_proto::api::DesiredSetBody;
use slipway_proto::Envelope;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// One app's published release.
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    pub envelope: Envelope,
    /// Hosts whose labels include all of these get the release.
    pub selector: BTreeMap<String, String>,
    /// sha256 of the envelope JSON: changes on every new release and every re-signature.
    pub fingerprint: String,
}

/// Every app's published release, by app name.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub releases: BTreeMap<String, Published>,
}

impl Snapshot {
    /// The releases aimed at a host with `labels`, and the version token of that set.
    pub fn desired_for(&self, labels: &BTreeMap<String, String>) -> DesiredSetBody {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut releases = BTreeMap::new();
        for (app, p) in &self.releases {
            if p.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                ctx.update(app.as_bytes());
                ctx.update(b"\0");
                ctx.update(p.fingerprint.as_bytes());
                ctx.update(b"\n");
                releases.insert(app.clone(), p.envelope.clone());
            }
        }
        DesiredSetBody {
            version: hex::encode(&ctx.finish().as_ref()[..12]),
            releases,
            ..Default::default()
        }
    }
}

/// Holds the current snapshot; long-polls subscribe to it.
pub struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
    /// Serializes reloads so an older snapshot never replaces a newer one.
    reload: Mutex<()>,
}

impl Publisher {
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let (tx, _) = watch::channel(Arc::new(build(store).await?));
        Ok(Self {
            tx,
            reload: Mutex::new(()),
        })
    }

    /// Re-reads the newest releases from the store and wakes every long-poll.
    pub async fn publish(&self, store: &dyn Store) -> Result<(), StoreError> {
        let _guard = self.reload.lock().await;
        let snap = build(store).await?;
        self.tx.send_replace(Arc::new(snap));
        Ok(())
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }
}

async fn build(store: &dyn Store) -> Result<Snapshot, StoreError> {
    let mut releases = BTreeMap::new();
    for r in store.latest_releases().await? {
        let envelope =
            Envelope::from_json(r.envelope.as_bytes()).map_err(|e| StoreError::Corrupt {
                what: format!("envelope of release {} seq {}", r.app, r.seq),
                reason: e.to_string(),
            })?;
        let selector = release_body(&envelope)
            .map(|rel| rel.spec.rollout.selector)
            .map_err(|e| StoreError::Corrupt {
                what: format!("body of release {} seq {}", r.app, r.seq),
                reason: e.to_string(),
            })?;
        let fingerprint = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            r.envelope.as_bytes(),
        ));
        releases.insert(
            r.app.clone(),
            Published {
                seq: r.seq,
                envelope,
                selector,
                fingerprint,
            },
        );
    }
    Ok(Snapshot { releases })
}

/// Why a stored envelope does not hold a release.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("envelope payload is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("envelope payload is not a release: {0}")]
    Json(#[from] serde_json::Error),
}

/// The release inside one of our own envelopes (signed by us, so not verified again here).
pub fn release_body(envelope: &Envelope) -> Result<slipway_proto::Release, BodyError> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.decode(&envelope.payload)?;
    Ok(serde_json::from_slice(&body)?)
}
