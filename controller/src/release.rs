//! Where releases are born: resolve the image, take the next seq, sign, store, publish.
//! A rollback is the same thing with an older release's digest.

use crate::api::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::signer::{self, ReleaseParams};
use crate::store::{ReleaseRecord, StoreError};
use slipway_proto::{AppSpec, ImageRef, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// The controller's signing key and what it signs with.
pub struct ReleaseSigner {
    pub key: SigningKey,
    pub key_set_version: u64,
    pub validity: Duration,
}

impl ReleaseSigner {
    /// Signs `spec` + `image` as release `seq`; returns the envelope JSON and its expiry.
    pub fn sign(
        &self,
        spec: &AppSpec,
        seq: u64,
        image: ImageRef,
        annotations: BTreeMap<String, String>,
    ) -> ApiResult<(String, SystemTime)> {
        let params = ReleaseParams {
            seq,
            image,
            validity: self.validity,
            key_set_version: self.key_set_version,
            annotations,
        };
        let (release, env) = signer::sign_release(spec, params, &[&self.key]).map_err(|e| {
            ApiError::Unprocessable(format!("release {} seq {seq}: {e:#}", spec.name))
        })?;
        Ok((
            serde_json::to_string(&env).expect("envelope serializes"),
            release.expires,
        ))
    }
}

/// One lock per app so concurrent releases of one app queue instead of racing for a seq.
#[derive(Default)]
pub struct AppLocks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl AppLocks {
    pub async fn get(&self, app: &str) -> Arc<Mutex<()>> {
        self.0
            .lock()
            .await
            .entry(app.to_string())
            .or_default()
            .clone()
    }
}

/// `POST /v1/apps/{app}/releases`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    app: &str,
    requested: &str,
    mut annotations: BTreeMap<String, String>,
) -> ApiResult<ReleaseRecord> {
    let app_rec = state
        .store
        .app(app)
        .await?
        .ok_or_else(|| unknown_app(app))?;
    let resolved = state
        .resolver
        .resolve(requested, &app_rec.spec.image)
        .await?;
    tracing::info!(app, requested, image = %resolved.image, "resolved image");
    annotations.insert("slipway.requested".into(), requested.to_string());
    annotations.insert("slipway.released-by".into(), caller.name.clone());
    if let Some(index) = &resolved.index {
        annotations.insert("slipway.index".into(), index.to_string());
    }
    let rec = append(
        state,
        caller,
        app,
        resolved.image,
        requested,
        None,
        annotations,
    )
    .await?;
    audit(
        state,
        caller,
        "release.create",
        &rec,
        &format!("{requested} -> {}", rec.image),
    )
    .await?;
    Ok(rec)
}

/// `POST /v1/apps/{app}/rollback`: a new, higher seq pointing at an older release's digest.
pub async fn rollback(
    state: &AppState,
    caller: &Caller,
    app: &str,
    to_seq: Option<u64>,
) -> ApiResult<ReleaseRecord> {
    if state.store.app(app).await?.is_none() {
        return Err(unknown_app(app));
    }
    let releases = state.store.releases(app).await?;
    let Some(latest) = releases.last() else {
        return Err(ApiError::Conflict(format!(
            "app {app} has no release yet: nothing to roll back to"
        )));
    };
    let target = match to_seq {
        Some(s) => releases.iter().find(|r| r.seq == s).ok_or_else(|| {
            ApiError::NotFound(format!(
                "app {app} has no release seq {s} (latest is {})",
                latest.seq
            ))
        })?,
        // The newest earlier release that runs a different image than the latest.
        None => releases
            .iter()
            .rev()
            .find(|r| r.image != latest.image)
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "app {app}: no earlier release has an image other than {}; nothing to roll back to",
                    latest.image
                ))
            })?,
    };
    let target_seq = target.seq;
    let image: ImageRef = target
        .image
        .parse()
        .map_err(|e| ApiError::Internal(format!("stored release {app} seq {target_seq}: {e}")))?;
    let mut annotations = BTreeMap::new();
    annotations.insert("slipway.rollback-of".into(), target_seq.to_string());
    annotations.insert("slipway.released-by".into(), caller.name.clone());
    let requested = format!("rollback to seq {target_seq}");
    let rec = append(
        state,
        caller,
        app,
        image,
        &requested,
        Some(target_seq),
        annotations,
    )
    .await?;
    audit(
        state,
        caller,
        "release.rollback",
        &rec,
        &format!("to seq {target_seq}: {}", rec.image),
    )
    .await?;
    Ok(rec)
}

fn unknown_app(app: &str) -> ApiError {
    ApiError::NotFound(format!(
        "unknown app `{app}`: apply its spec first (slipway app apply -f app.toml)"
    ))
}

/// Takes the next seq, signs with the app's current spec, stores and publishes.
async fn append(
    state: &AppState,
    caller: &Caller,
    app: &str,
    image: ImageRef,
    requested: &str,
    rollback_of: Option<u64>,
    annotations: BTreeMap<String, String>,
) -> ApiResult<ReleaseRecord> {
    let lock = state.locks.get(app).await;
    let _guard = lock.lock().await;
    let app_rec = state
        .store
        .app(app)
        .await?
        .ok_or_else(|| unknown_app(app))?;
    let mut last_err = None;
    for _ in 0..crate::defaults::SEQ_RETRIES {
        let seq = state.store.latest_seq(app).await? + 1;
        let (envelope, expires) =
            state
                .signer
                .sign(&app_rec.spec, seq, image.clone(), annotations.clone())?;
        let new = ReleaseRecord {
            app: app.to_string(),
            seq,
            image: image.to_string(),
            requested: requested.to_string(),
            spec_version: app_rec.version,
            rollback_of,
            created_by: caller.name.clone(),
            created_at: SystemTime::now(),
            envelope,
            expires,
        };
        match state.store.insert_release(&new).await {
            Ok(()) => {
                state.publisher.publish(state.store.as_ref()).await?;
                state.metrics.releases.inc();
                tracing::info!(app, seq, image = %new.image, "release published");
                return state.store.release(app, seq).await?.ok_or_else(|| {
                    ApiError::Internal(format!("release {app} seq {seq} vanished"))
                });
            }
            // Another controller took this seq: try the next one.
            Err(e @ StoreError::SeqTaken { .. }) => last_err = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_err.map_or_else(
        || ApiError::Internal("no seq attempted".into()),
        ApiError::from,
    ))
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    rec: &ReleaseRecord,
    detail: &str,
) -> ApiResult<()> {
    let object = format!("release/{}/{}", rec.app, rec.seq);
    state
        .store
        .audit(&caller.name, action, &object, detail, SystemTime::now())
        .await?;
    Ok(())
}
