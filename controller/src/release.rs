//! Where releases are born: resolve the image, take the next seq, sign, store, publish.
//! A rollback is the same thing with an older release's digest.

use crate::api::AppState;
use crate::resolve::ResolveError;
use crate::rollout::RolloutError;
use crate::signer::{self, ReleaseParams};
use crate::store::{ReleaseRecord, StoreError};
use slipway_proto::{AppSpec, ImageRef, SigningKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Why a release, a rollback or a rollout action was refused or failed. The API maps each to
/// a status code (`crate::error`); the rollout driver and GitOps log them.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("unknown app `{app}`: apply its spec first (slipway app apply -f app.toml)")]
    UnknownApp { app: String },
    #[error("app {app} has no release yet: nothing to roll back to")]
    NoReleaseYet { app: String },
    #[error("app {app} has no release seq {seq} (latest is {latest})")]
    NoSuchRelease { app: String, seq: u64, latest: u64 },
    #[error(
        "app {app}: no earlier release has an image other than {image}; nothing to roll back to"
    )]
    NoOtherImage { app: String, image: String },
    /// The spec or image cannot be signed as a release (invalid spec, foreign repository).
    #[error("release {app} seq {seq}: {source}")]
    Unsignable {
        app: String,
        seq: u64,
        source: signer::SignError,
    },
    #[error("stored release {app} seq {seq}: {reason}")]
    CorruptRelease {
        app: String,
        seq: u64,
        reason: String,
    },
    #[error("release {app} seq {seq} vanished")]
    Vanished { app: String, seq: u64 },
    #[error("app `{app}` has no rollout: release it first (slipway release {app} --image REF)")]
    NoRollout { app: String },
    #[error("rollout of {app} seq {seq} is {state}: cannot {action}")]
    RolloutRefused {
        app: String,
        seq: u64,
        state: slipway_proto::api::RolloutState,
        action: String,
    },
    #[error("rollout of `{app}` kept changing under `{action}`; try again")]
    RolloutBusy { app: String, action: &'static str },
    #[error("app `{app}` uses secret `{name}`, which is not set: slipway secret set {app} {name}")]
    SecretNotSet { app: String, name: String },
    #[error(transparent)]
    Rollout(RolloutError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RolloutError> for ReleaseError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Store(e) => ReleaseError::Store(e),
            other => ReleaseError::Rollout(other),
        }
    }
}

pub type ReleaseResult<T> = Result<T, ReleaseError>;

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
    ) -> ReleaseResult<(String, SystemTime)> {
        let params = ReleaseParams {
            seq,
            image,
            validity: self.validity,
            key_set_version: self.key_set_version,
            annotations,
        };
        let (release, env) = signer::sign_release(spec, params, &[&self.key]).map_err(|e| {
            ReleaseError::Unsignable {
                app: spec.name.to_string(),
                seq,
                source: e,
            }
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

/// Releases `requested` (a tag or digest of the app's repository) as the app's next seq, as
/// `actor` (`POST /v1/apps/{app}/releases`, or GitOps).
pub async fn create(
    state: &AppState,
    actor: &str,
    app: &str,
    requested: &str,
    mut annotations: BTreeMap<String, String>,
) -> ReleaseResult<ReleaseRecord> {
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
    annotations.insert("slipway.released-by".into(), actor.to_string());
    if let Some(index) = &resolved.index {
        annotations.insert("slipway.index".into(), index.to_string());
    }
    let rec = append(
        state,
        actor,
        app,
        resolved.image,
        requested,
        None,
        None,
        annotations,
    )
    .await?;
    audit(
        state,
        actor,
        "release.create",
        &rec,
        &format!("{requested} -> {}", rec.image),
    )
    .await?;
    Ok(rec)
}

/// A new, higher seq pointing at an older release's digest, as `actor`
/// (`POST /v1/apps/{app}/rollback`, or the rollout driver after a halt).
pub async fn rollback(
    state: &AppState,
    actor: &str,
    app: &str,
    to_seq: Option<u64>,
    now: bool,
) -> ReleaseResult<ReleaseRecord> {
    if state.store.app(app).await?.is_none() {
        return Err(unknown_app(app));
    }
    let releases = state.store.releases(app).await?;
    let Some(latest) = releases.last() else {
        return Err(ReleaseError::NoReleaseYet { app: app.into() });
    };
    let target = match to_seq {
        Some(s) => {
            releases
                .iter()
                .find(|r| r.seq == s)
                .ok_or_else(|| ReleaseError::NoSuchRelease {
                    app: app.into(),
                    seq: s,
                    latest: latest.seq,
                })?
        }
        // The newest earlier release that runs a different image than the latest.
        None => releases
            .iter()
            .rev()
            .find(|r| r.image != latest.image)
            .ok_or_else(|| ReleaseError::NoOtherImage {
                app: app.into(),
                image: latest.image.clone(),
            })?,
    };
    let target_seq = target.seq;
    let corrupt = |reason: String| ReleaseError::CorruptRelease {
        app: app.into(),
        seq: target_seq,
        reason,
    };
    let image: ImageRef = target
        .image
        .parse()
        .map_err(|e: slipway_proto::ImageRefError| corrupt(e.to_string()))?;
    // The release comes back whole: the spec it was signed with (env, volumes, health...),
    // not whatever was applied since.
    let envelope = slipway_proto::Envelope::from_json(target.envelope.as_bytes())
        .map_err(|e| corrupt(e.to_string()))?;
    let body = crate::publish::release_body(&envelope).map_err(|e| corrupt(e.to_string()))?;
    let spec = Pinned {
        spec: body.spec,
        version: target.spec_version,
    };
    let mut annotations = BTreeMap::new();
    annotations.insert("slipway.rollback-of".into(), target_seq.to_string());
    annotations.insert("slipway.released-by".into(), actor.to_string());
    if now {
        annotations.insert(ONE_WAVE.0.into(), ONE_WAVE.1.into());
    }
    let requested = format!("rollback to seq {target_seq}");
    let rec = append(
        state,
        actor,
        app,
        image,
        &requested,
        Some(target_seq),
        Some(spec),
        annotations,
    )
    .await?;
    audit(
        state,
        actor,
        "release.rollback",
        &rec,
        &format!("to seq {target_seq}: {}", rec.image),
    )
    .await?;
    Ok(rec)
}

/// The annotation that asks for a rollout in one wave (`slipway rollback --now`).
pub const ONE_WAVE: (&str, &str) = ("slipway.rollout", "one-wave");

fn unknown_app(app: &str) -> ReleaseError {
    ReleaseError::UnknownApp { app: app.into() }
}

/// A spec to sign instead of the app's current one, and the spec version it came from.
struct Pinned {
    spec: AppSpec,
    version: u64,
}

/// Takes the next seq, signs with `pinned` (a rollback: the target release's own spec) or
/// else the app's current spec, stores and publishes.
#[allow(clippy::too_many_arguments)]
async fn append(
    state: &AppState,
    actor: &str,
    app: &str,
    image: ImageRef,
    requested: &str,
    rollback_of: Option<u64>,
    pinned: Option<Pinned>,
    annotations: BTreeMap<String, String>,
) -> ReleaseResult<ReleaseRecord> {
    let lock = state.locks.get(app).await;
    let _guard = lock.lock().await;
    let pinned = match pinned {
        Some(p) => p,
        None => {
            let app_rec = state
                .store
                .app(app)
                .await?
                .ok_or_else(|| unknown_app(app))?;
            // A new release pins the newest version of each secret its spec uses; a
            // rollback keeps the pins of the release it restores.
            Pinned {
                spec: crate::secrets::pin(state.store.as_ref(), app_rec.spec).await?,
                version: app_rec.version,
            }
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let seq = state.store.latest_seq(app).await? + 1;
        let (envelope, expires) =
            state
                .signer
                .sign(&pinned.spec, seq, image.clone(), annotations.clone())?;
        let new = ReleaseRecord {
            app: app.to_string(),
            seq,
            image: image.to_string(),
            requested: requested.to_string(),
            spec_version: pinned.version,
            rollback_of,
            created_by: actor.to_string(),
            created_at: SystemTime::now(),
            envelope,
            expires,
        };
        match state.store.insert_release(&new).await {
            Ok(()) => {
                state.publisher.publish(state.store.as_ref()).await?;
                state.metrics.releases.inc();
                crate::events::emit(
                    state,
                    "release.created",
                    Some(app),
                    serde_json::json!({"seq": seq, "image": new.image, "requested": new.requested,
                        "by": actor, "rollback_of": rollback_of}),
                )
                .await;
                tracing::info!(app, seq, image = %new.image, "release published");
                return state.store.release(app, seq).await?.ok_or_else(|| {
                    ReleaseError::Vanished {
                        app: app.into(),
                        seq,
                    }
                });
            }
            // Another controller took this seq: try the next one, a few times.
            Err(StoreError::SeqTaken { .. }) if attempt < crate::defaults::SEQ_RETRIES => {}
            Err(e) => return Err(e.into()),
        }
    }
}

async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    rec: &ReleaseRecord,
    detail: &str,
) -> ReleaseResult<()> {
    let object = format!("release/{}/{}", rec.app, rec.seq);
    state
        .store
        .audit(actor, action, &object, detail, SystemTime::now())
        .await?;
    Ok(())
}
