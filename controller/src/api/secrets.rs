//! `/v1/apps/{app}/secrets`: admins set and remove secret values; operators list them.
//! A value is encrypted under the master key before it reaches the store and never leaves
//! the controller unsealed: no answer, audit entry or log line carries it.

use super::{audit, rfc3339, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::secrets::at_rest_label;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use slipway_proto::api::{Role, SecretInfo};
use slipway_proto::seal::secret_digest;
use slipway_proto::valid_secret_name;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Largest secret value accepted: secrets are keys and passwords, not data.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

fn check_name(app: &str, name: &str) -> Result<(), ApiError> {
    if !valid_secret_name(name) {
        return Err(ApiError::BadRequest(format!(
            "secret `{name}` of app `{app}`: a name is 1..=63 of [a-z0-9-], not starting with `-`"
        )));
    }
    Ok(())
}

async fn known_app(state: &AppState, app: &str) -> Result<(), ApiError> {
    match state.store.app(app).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!(
            "unknown app `{app}`: apply its spec before setting secrets"
        ))),
    }
}

/// `PUT /v1/apps/{app}/secrets/{name}`: the body is the value; answers the new version.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<SecretInfo>> {
    caller.require_admin("set secrets")?;
    check_name(&app, &name)?;
    if body.is_empty() || body.len() > MAX_SECRET_BYTES {
        return Err(ApiError::BadRequest(format!(
            "secret `{name}` of app `{app}`: value is {} bytes, must be 1..={MAX_SECRET_BYTES}",
            body.len()
        )));
    }
    known_app(&state, &app).await?;
    let master = state.master_key()?;
    let now = SystemTime::now();
    // The ciphertext is bound to its version, known for sure only once stored: bind it to
    // the next one, and re-encrypt in the rare race where another writer took that.
    let next = state
        .store
        .secret_versions(Some(&app))
        .await?
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.version)
        .max()
        .unwrap_or(0)
        + 1;
    let enc = master
        .encrypt(&at_rest_label(&app, &name, next), &body)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let version = state
        .store
        .put_secret(&app, &name, &enc, &secret_digest(&body), &caller.name, now)
        .await?;
    if version != next {
        state
            .store
            .rewrap_secret(
                &app,
                &name,
                version,
                &master
                    .encrypt(&at_rest_label(&app, &name, version), &body)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            )
            .await?;
    }
    audit(
        &state,
        &caller.name,
        "secret.set",
        &format!("app/{app}/secret/{name}"),
        &format!("version {version}"),
    )
    .await?;
    Ok(Json(SecretInfo {
        name,
        version: Some(version),
        set_by: Some(caller.name),
        set_at: Some(rfc3339(now)),
    }))
}

/// `GET /v1/apps/{app}/secrets`: newest version of each secret; names only for read-only.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    caller.require_operator("list secrets")?;
    known_app(&state, &app).await?;
    let mut newest = BTreeMap::new();
    for r in state.store.secret_versions(Some(&app)).await? {
        newest.insert(r.name.clone(), r);
    }
    let admin = caller.role == Role::Admin;
    Ok(Json(
        newest
            .into_values()
            .map(|r| SecretInfo {
                name: r.name,
                version: admin.then_some(r.version),
                set_by: admin.then_some(r.set_by),
                set_at: admin.then(|| rfc3339(r.set_at)),
            })
            .collect(),
    ))
}

/// `DELETE /v1/apps/{app}/secrets/{name}`: removes every version.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<Json<SecretInfo>> {
    caller.require_admin("remove secrets")?;
    check_name(&app, &name)?;
    let n = state.store.remove_secret(&app, &name).await?;
    if n == 0 {
        return Err(ApiError::NotFound(format!(
            "app `{app}` has no secret `{name}`"
        )));
    }
    audit(
        &state,
        &caller.name,
        "secret.rm",
        &format!("app/{app}/secret/{name}"),
        &format!("{n} versions"),
    )
    .await?;
    Ok(Json(SecretInfo {
        name,
        ..Default::default()
    }))
}

/// `DELETE /v1/hosts/{host}/secret-key`: forget a host's key (a removed or stolen host);
/// nothing issued after is sealed to it, until its agent registers a key again.
pub async fn forget_host_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require_admin("forget host keys")?;
    if !state.store.remove_host_secret_key(&host).await? {
        return Err(ApiError::NotFound(format!(
            "host `{host}` has no secret key registered"
        )));
    }
    audit(
        &state,
        &caller.name,
        "host.forget-secret-key",
        &format!("host/{host}"),
        "",
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
