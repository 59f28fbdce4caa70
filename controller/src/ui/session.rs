//! Dashboard sessions: a login with an operator token gets a random session id in an
//! HttpOnly, SameSite=Strict cookie. The server keeps, per id, only the token's hash and an
//! expiry; every request looks the token up again, so revoking it ends its sessions at once.
//!
//! CSRF: the cookie stands in for a bearer token on `/v1` only when the request also carries
//! `X-Slipway-UI: 1` (a header a cross-site form or image cannot send, and that a cross-site
//! script could send only after a CORS preflight this controller never answers) and, when
//! the browser sends `Origin`, that origin is the controller's own.

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::store::Store;
use axum::http::{header, HeaderMap};
use slipway_proto::api::Role;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const COOKIE: &str = "slipway_session";
/// The header the dashboard's own requests carry.
pub const UI_HEADER: &str = "x-slipway-ui";

struct Session {
    token_hash: String,
    expires: Instant,
}

/// The live sessions of this controller (in memory: a restart logs every browser out).
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    /// Adds `Secure` to the cookie (TLS here or at a proxy in front).
    secure: bool,
}

impl Sessions {
    pub fn with_ttl(secure: bool, ttl: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            secure,
        }
    }

    /// Opens a session for a token already checked; returns its id.
    pub fn open(&self, token: &str, now: Instant) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                token_hash: auth::hash(token),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The token hash of a live session; an expired one is forgotten.
    fn token_hash(&self, id: &str, now: Instant) -> Option<String> {
        let mut map = self.map.lock().expect("sessions lock");
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.token_hash.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }

    /// `Set-Cookie` value for a new session.
    pub fn cookie(&self, id: &str) -> String {
        format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.ttl.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` value that deletes the cookie.
    pub fn cleared_cookie(&self) -> String {
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// The operator behind the session cookie of a request, its token checked again now.
    pub async fn caller(&self, store: &dyn Store, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let Some(id) = session_id(headers) else {
            return Err(ApiError::Unauthorized(
                "no dashboard session: log in at /ui/login".into(),
            ));
        };
        let Some(token_hash) = self.token_hash(&id, Instant::now()) else {
            return Err(ApiError::Unauthorized(
                "dashboard session expired: log in again at /ui/login".into(),
            ));
        };
        match store.token_by_hash(&token_hash).await? {
            Some(t) if matches!(t.role, Role::Admin | Role::ReadOnly) => Ok(Caller {
                name: t.name,
                role: t.role,
                host: t.host,
            }),
            _ => {
                self.close(&id);
                Err(ApiError::Unauthorized(
                    "the token of this dashboard session was revoked: log in again".into(),
                ))
            }
        }
    }
}

/// The session id in the request's cookies.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// Whether a request may use the session cookie for `/v1`: the dashboard's header, and an
/// `Origin` (when sent) naming this very host. Otherwise the caller gets the reason.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let ui = headers.get(UI_HEADER).and_then(|v| v.to_str().ok());
    if ui != Some("1") {
        return Err(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header".into(),
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::Forbidden(format!(
            "dashboard request from origin `{}` refused: only the controller's own pages may \
             use its session cookie",
            origin.to_str().unwrap_or("?")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::with_ttl(false, Duration::from_secs(60));
        let t0 = Instant::now();
        let id = s.open("swt_x", t0);
        assert_eq!(id.len(), 64);
        assert_eq!(s.token_hash(&id, t0).unwrap(), auth::hash("swt_x"));
        assert!(s.token_hash(&id, t0 + Duration::from_secs(61)).is_none());
        // Forgotten once seen expired.
        assert!(s.token_hash(&id, t0).is_none());
        let id = s.open("swt_y", t0);
        s.close(&id);
        assert!(s.token_hash(&id, t0).is_none());
        assert!(s.cookie("abc").contains("HttpOnly; SameSite=Strict"));
        assert!(Sessions::with_ttl(true, Duration::from_secs(1))
            .cookie("abc")
            .ends_with("; Secure"));
    }

    #[test]
    fn cookie_counts_only_with_the_ui_header_and_own_origin() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; slipway_session=s1"),
        );
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7440"));
        assert_eq!(session_id(&h).as_deref(), Some("s1"));
        assert!(check_same_origin(&h).is_err(), "no X-Slipway-UI");
        h.insert(UI_HEADER, HeaderValue::from_static("1"));
        assert!(
            check_same_origin(&h).is_ok(),
            "same-origin GET sends no Origin"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7440"),
        );
        assert!(check_same_origin(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let err = check_same_origin(&h).unwrap_err().to_string();
        assert!(err.contains("evil.example"), "{err}");
    }
}
