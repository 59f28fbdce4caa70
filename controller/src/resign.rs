//! Re-signing: every release a host is told to run gets a fresh signature (same seq, image
//! and spec; new issued_at and expiry) once less than `resign_before` of its validity
//! remains, so hosts never hold an expired release while the controller is up. That is the
//! newest release of every app, and every older one a rollout still assigns: hosts outside
//! the started waves (a rollout paused, or waiting days for manual promotion) keep theirs.

use crate::api::AppState;
use crate::publish::release_body;
use crate::store::{ReleaseRecord, StoreError};
use slipway_proto::Envelope;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum ResignError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("re-signing release {app} seq {seq}: {reason}")]
    Release {
        app: String,
        seq: u64,
        reason: String,
    },
}

/// What one pass of [`resign_due`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub resigned: usize,
    /// Releases that could not be re-signed (each logged once); retried on the next pass.
    pub failed: usize,
}

/// Re-signs every held release (see [`held_releases`]) that expires within `before` of now.
/// One release that cannot be re-signed is logged here and does not hold up the others; the
/// error returned is what stopped the whole pass (the store).
pub async fn resign_due(state: &AppState, before: Duration) -> Result<Pass, ResignError> {
    let now = SystemTime::now();
    let mut pass = Pass::default();
    for rec in held_releases(state).await? {
        if rec.expires > now + before {
            continue;
        }
        match resign(state, &rec, now).await {
            Ok(()) => pass.resigned += 1,
            Err(e) => {
                tracing::error!(app = %rec.app, seq = rec.seq, error = %e, "re-signing failed; will retry");
                pass.failed += 1;
            }
        }
    }
    if pass.resigned > 0 {
        state.publisher.publish(state.store.as_ref()).await?;
    }
    Ok(pass)
}

/// The releases hosts may hold now: the newest of every app, plus every seq the rollout view
/// assigns to some host (or gives to hosts outside the plan). Older releases nobody is told to
/// run are left to expire.
pub async fn held_releases(state: &AppState) -> Result<Vec<ReleaseRecord>, StoreError> {
    let view = state.rollouts.subscribe().borrow().clone();
    let mut out = Vec::new();
    for rec in state.store.latest_releases().await? {
        let older: BTreeSet<u64> = view
            .apps
            .get(&rec.app)
            .map(|v| {
                v.per_host
                    .values()
                    .chain(std::iter::once(&v.default))
                    .flatten()
                    .copied()
                    .filter(|s| *s < rec.seq)
                    .collect()
            })
            .unwrap_or_default();
        for seq in older {
            if let Some(r) = state.store.release(&rec.app, seq).await? {
                out.push(r);
            }
        }
        out.push(rec);
    }
    Ok(out)
}

/// Signs `rec` again with a new expiry, stores the signature, audits and counts it.
async fn resign(state: &AppState, rec: &ReleaseRecord, now: SystemTime) -> Result<(), ResignError> {
    let bad = |reason: String| ResignError::Release {
        app: rec.app.clone(),
        seq: rec.seq,
        reason,
    };
    let env = Envelope::from_json(rec.envelope.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let release = release_body(&env).map_err(|e| bad(e.to_string()))?;
    let image = release.image_ref().map_err(|e| bad(e.to_string()))?;
    let (envelope, expires) = state
        .signer
        .sign(&release.spec, rec.seq, image, release.annotations.clone())
        .map_err(|e| bad(e.to_string()))?;
    state
        .store
        .add_signature(&rec.app, rec.seq, &envelope, expires, now)
        .await?;
    state
        .store
        .audit(
            "controller",
            "release.resign",
            &format!("release/{}/{}", rec.app, rec.seq),
            &format!(
                "expiry {} -> {}",
                humantime::format_rfc3339_seconds(rec.expires),
                humantime::format_rfc3339_seconds(expires)
            ),
            now,
        )
        .await?;
    state.metrics.resigns.inc();
    tracing::info!(app = %rec.app, seq = rec.seq, expires = %humantime::format_rfc3339_seconds(expires), "release re-signed");
    Ok(())
}

/// Runs [`resign_due`] every `interval` until `shutdown` turns true.
pub async fn run(
    state: AppState,
    before: Duration,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    // Only the lead re-signs (two replicas signing the same release race for its row); a
    // replica that becomes the lead runs a pass at once.
    let mut lead = state.rollouts.lead();
    loop {
        tokio::select! {
            ok = async { lead.wait_for(|l| *l).await.is_ok() } => if !ok { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Failures of single releases are logged by `resign_due` itself.
        if let Err(e) = resign_due(&state, before).await {
            tracing::error!(error = %e, "re-signing pass failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
