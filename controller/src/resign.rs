//! Re-signing: the newest release of every app gets a fresh signature (same seq, image and
//! spec; new issued_at and expiry) once less than `resign_before` of its validity remains,
//! so hosts never hold an expired release while the controller is up.

use crate::api::AppState;
use crate::publish::release_body;
use crate::store::StoreError;
use slipway_proto::Envelope;
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

/// Re-signs every newest release that expires within `before` of `now`; returns how many.
pub async fn resign_due(state: &AppState, before: Duration) -> Result<usize, ResignError> {
    let now = SystemTime::now();
    let mut count = 0;
    for rec in state.store.latest_releases().await? {
        if rec.expires > now + before {
            continue;
        }
        let bad = |reason: String| ResignError::Release {
            app: rec.app.clone(),
            seq: rec.seq,
            reason,
        };
        let env = Envelope::from_json(rec.envelope.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let release = release_body(&env).map_err(bad)?;
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
        tracing::info!(app = %rec.app, seq = rec.seq, "release re-signed");
        count += 1;
    }
    if count > 0 {
        state.publisher.publish(state.store.as_ref()).await?;
    }
    Ok(count)
}

/// Runs [`resign_due`] every `interval` until `shutdown` turns true.
pub async fn run(
    state: AppState,
    before: Duration,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = resign_due(&state, before).await {
            tracing::error!(error = %e, "re-signing failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
