//! Bearer tokens: operators (admin, read-only) and one agent token per host. Only the sha256
//! of a token is stored; the presented token's hash is compared in constant time.

use crate::error::ApiError;
use crate::store::{Store, TokenRecord};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use slipway_proto::api::Role;
use std::time::SystemTime;

/// Every token starts with this, so a leaked one is easy to find in logs and repos.
pub const TOKEN_PREFIX: &str = "swt_";

/// A new random token: the prefix and 32 random bytes, base64url.
pub fn generate() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator works");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Lowercase hex sha256 of a token, as stored.
pub fn hash(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates and stores a token; returns the secret (shown once) and its record.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    role: Role,
    host: Option<&str>,
) -> Result<(String, TokenRecord), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ApiError::BadRequest(format!(
            "token name `{name}` must be 1..=64 characters of [A-Za-z0-9._-]"
        )));
    }
    match (role, host) {
        (Role::Agent, None) => {
            return Err(ApiError::BadRequest(format!(
                "agent token `{name}` needs the host it speaks for (host)"
            )))
        }
        (Role::Agent, Some(h)) => {
            h.parse::<slipway_proto::HostId>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        (_, Some(_)) => {
            return Err(ApiError::BadRequest(format!(
                "token `{name}`: only agent tokens are bound to a host"
            )))
        }
        _ => {}
    }
    let secret = generate();
    let record = TokenRecord {
        name: name.to_string(),
        role,
        host: host.map(str::to_string),
        hash: hash(&secret),
        created_at: SystemTime::now(),
    };
    store.create_token(&record).await?;
    Ok((secret, record))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub host: Option<String>,
}

impl Caller {
    /// Operators with write access.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::Forbidden(format!(
                "token `{}` ({}) may not {what}: an admin token is required",
                self.name, self.role
            ))),
        }
    }

    /// Operators, read-only or not.
    pub fn require_operator(&self, what: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::ReadOnly => Ok(()),
            Role::Agent => Err(ApiError::Forbidden(format!(
                "agent token `{}` may not {what}: an operator token is required",
                self.name
            ))),
        }
    }

    /// The agent of `host` itself (admins may act for any host).
    pub fn require_host(&self, host: &str, what: &str) -> Result<(), ApiError> {
        match (&self.role, &self.host) {
            (Role::Agent, Some(h)) if constant_time_eq(h.as_bytes(), host.as_bytes()) => Ok(()),
            (Role::Admin, _) => Ok(()),
            _ => Err(ApiError::Forbidden(format!(
                "token `{}` may not {what} of host `{host}`: only that host's agent token may",
                self.name
            ))),
        }
    }
}

/// Looks up the bearer token of a request.
pub async fn authenticate(store: &dyn Store, header: Option<&str>) -> Result<Caller, ApiError> {
    let Some(value) = header else {
        return Err(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header".into(),
        ));
    };
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    };
    let presented = hash(token);
    match store.token_by_hash(&presented).await? {
        Some(t) if constant_time_eq(t.hash.as_bytes(), presented.as_bytes()) => Ok(Caller {
            name: t.name,
            role: t.role,
            host: t.host,
        }),
        _ => Err(ApiError::Unauthorized("unknown or revoked token".into())),
    }
}

impl FromRequestParts<crate::api::AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::api::AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if header.is_none() && crate::ui::session::session_id(&parts.headers).is_some() {
            // The dashboard: its session cookie, on the CSRF terms of `ui::session`.
            crate::ui::session::check_same_origin(&parts.headers)?;
            return state.ui.caller(state.store.as_ref(), &parts.headers).await;
        }
        authenticate(state.store.as_ref(), header).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash(&a).len(), 64);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
