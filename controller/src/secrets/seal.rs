//! Secrets into releases and desired sets: a new release pins each secret's newest version
//! and digest in its signed spec; a host's desired set carries those versions sealed to the
//! host's own key. A host without a key (never sent one, or removed) gets nothing sealed.

use super::at_rest_label;
use crate::api::AppState;
use crate::error::ApiError;
use crate::release::ReleaseError;
use crate::store::Store;
use base64::Engine;
use slipway_proto::api::{DesiredSetBody, HostSecret};
use slipway_proto::seal::{seal, secret_digest, HostPublicKey, SealContext};
use slipway_proto::{AppSpec, Release, SecretPin};
use std::collections::BTreeMap;

/// Writes the newest version and digest of every secret `spec` uses into its pins.
pub async fn pin(store: &dyn Store, mut spec: AppSpec) -> Result<AppSpec, ReleaseError> {
    let app = spec.name.to_string();
    let mut newest: BTreeMap<String, SecretPin> = BTreeMap::new();
    for r in store.secret_versions(Some(&app)).await? {
        newest.insert(
            r.name,
            SecretPin {
                version: r.version,
                digest: r.digest,
            },
        );
    }
    let mut pins = BTreeMap::new();
    for name in spec.secret_names() {
        let pin = newest.get(name).ok_or_else(|| ReleaseError::SecretNotSet {
            app: app.clone(),
            name: name.to_string(),
        })?;
        pins.insert(name.to_string(), pin.clone());
    }
    spec.secret_versions = pins;
    Ok(spec)
}

/// The spec inside a signed envelope this controller made (already trusted: it signed it).
fn release_of(env: &slipway_proto::Envelope) -> Option<Release> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .ok()?;
    serde_json::from_slice(&body).ok()
}

/// Seals the pinned secret versions of every release in `body` to `host`'s key.
pub async fn seal_for_host(
    state: &AppState,
    host: &str,
    body: &mut DesiredSetBody,
) -> Result<(), ApiError> {
    let mut key: Option<Option<HostPublicKey>> = None;
    for (app, env) in &body.releases {
        let Some(rel) = release_of(env) else { continue };
        if rel.spec.secret_versions.is_empty() {
            continue;
        }
        let pk = match &key {
            Some(k) => k.clone(),
            None => {
                let k = match state.store.host_secret_key(host).await? {
                    Some(text) => Some(HostPublicKey::parse(&text).map_err(|e| {
                        ApiError::Internal(format!("stored key of host `{host}`: {e}"))
                    })?),
                    None => None,
                };
                key = Some(k.clone());
                k
            }
        };
        let Some(pk) = pk else {
            tracing::warn!(
                host,
                app,
                "host has no secret key: its secrets are not sealed"
            );
            continue;
        };
        match seal_app(state, host, app, &rel, &pk).await {
            Ok(sealed) => {
                body.secrets.insert(app.clone(), sealed);
            }
            // The store is unreachable: the whole answer fails and the agent keeps its set.
            Err(AppSeal::Store(e)) => return Err(e),
            // This app's secrets are unusable: its release on this host is refused by the
            // agent (a secret not delivered); the host's other apps are unaffected.
            Err(AppSeal::Unusable(why)) => {
                tracing::error!(host, app, error = %why, "cannot seal this app's secrets to the host; its other apps are still served");
            }
        }
    }
    Ok(())
}

/// Why one app's secrets could not be sealed.
enum AppSeal {
    Store(ApiError),
    Unusable(String),
}

impl From<crate::store::StoreError> for AppSeal {
    fn from(e: crate::store::StoreError) -> Self {
        AppSeal::Store(e.into())
    }
}

/// Seals every version `rel` pins to `pk`.
async fn seal_app(
    state: &AppState,
    host: &str,
    app: &str,
    rel: &Release,
    pk: &HostPublicKey,
) -> Result<BTreeMap<String, HostSecret>, AppSeal> {
    let master = state
        .master_key()
        .map_err(|e| AppSeal::Unusable(e.to_string()))?;
    let mut sealed = BTreeMap::new();
    for (name, pin) in &rel.spec.secret_versions {
        let Some(rec) = state.store.secret(app, name, pin.version).await? else {
            tracing::warn!(app, secret = %name, version = pin.version, "pinned secret version is gone");
            continue;
        };
        let value = master
            .decrypt(&at_rest_label(app, name, pin.version), &rec.value_enc)
            .map_err(|e| AppSeal::Unusable(format!("secret `{name}` v{}: {e}", pin.version)))?;
        if secret_digest(&value) != pin.digest {
            return Err(AppSeal::Unusable(format!(
                "secret `{name}` v{} does not match the digest its release pins",
                pin.version
            )));
        }
        let ctx = SealContext {
            app,
            name,
            version: pin.version,
            host,
        };
        let s = seal(pk, &ctx, &value)
            .map_err(|e| AppSeal::Unusable(format!("secret `{name}` v{}: {e}", pin.version)))?;
        sealed.insert(
            name.clone(),
            HostSecret {
                version: pin.version,
                sealed: s,
            },
        );
    }
    Ok(sealed)
}
