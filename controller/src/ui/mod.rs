//! The web dashboard at `/ui/`: plain HTML, JavaScript and CSS embedded in the binary (nothing
//! is built at install). The page reads the `/v1` API with its session cookie (see
//! [`session`] for the CSRF rules) and follows `GET /v1/events` live.
//!
//! Routes: `GET /ui/` (the dashboard; without a session, a redirect to the login form),
//! `GET|POST /ui/login`, `POST /ui/logout`, `GET /ui/session` (who is logged in), and the
//! assets `GET /ui/app.js`, `GET /ui/app.css`.

pub mod config;
pub mod defaults;
pub mod session;

pub use config::UiConfig;
pub use session::Sessions;

use crate::api::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use slipway_proto::api::Role;
use std::time::Instant;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Scripts and styles from this origin only, no framing: an injected string cannot run.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(whoami))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/ui/app.css", get(|| async { asset("text/css", APP_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn page(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it the browser sends `Origin: null` on the login form.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// The dashboard, or the login form for a browser without a live session.
async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.ui.caller(state.store.as_ref(), &headers).await {
        Ok(_) => page(StatusCode::OK, INDEX_HTML.to_string()),
        Err(_) => Redirect::to("/ui/login").into_response(),
    }
}

fn login_page(status: StatusCode, error: &str) -> Response {
    let msg = if error.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" id=\"login-error\">{}</p>",
            escape(error)
        )
    };
    page(status, LOGIN_HTML.replace("<!--error-->", &msg))
}

async fn login_form() -> Response {
    login_page(StatusCode::OK, "")
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

/// Checks the token and opens a session; an agent token, an unknown or a revoked one gets
/// the form again with the reason.
async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        // A login posted from another site would log this browser into someone else's
        // session (login CSRF).
        let mut same = headers.clone();
        same.insert(session::UI_HEADER, HeaderValue::from_static("1"));
        if session::check_same_origin(&same).is_err() {
            let origin = origin.to_str().unwrap_or("?");
            return login_page(
                StatusCode::FORBIDDEN,
                &format!("login from origin `{origin}` refused: use this controller's own page"),
            );
        }
    }
    let token = match serde_urlencoded::from_bytes::<LoginForm>(&body) {
        Ok(f) if !f.token.trim().is_empty() => f.token.trim().to_string(),
        _ => return login_page(StatusCode::BAD_REQUEST, "enter an admin or read-only token"),
    };
    let caller =
        match auth::authenticate(state.store.as_ref(), Some(&format!("Bearer {token}"))).await {
            Ok(c) => c,
            Err(e) => return login_page(StatusCode::UNAUTHORIZED, &e.to_string()),
        };
    if caller.role == Role::Agent {
        return login_page(
            StatusCode::FORBIDDEN,
            &format!(
                "agent token `{}` cannot open the dashboard: log in with an admin or read-only token",
                caller.name
            ),
        );
    }
    let id = state.ui.open(&token, Instant::now());
    tracing::info!(token = %caller.name, role = %caller.role, "dashboard login");
    let mut resp = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&state.ui.cookie(&id)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    session::check_same_origin(&headers)?;
    if let Some(id) = session::session_id(&headers) {
        state.ui.close(&id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let cleared = HeaderValue::from_str(&state.ui.cleared_cookie())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    resp.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(resp)
}

#[derive(serde::Serialize)]
struct WhoAmI {
    name: String,
    role: Role,
}

/// Who the page is logged in as: read-only users get no buttons.
async fn whoami(caller: Caller) -> ApiResult<Json<WhoAmI>> {
    caller.require_operator("open the dashboard")?;
    Ok(Json(WhoAmI {
        name: caller.name,
        role: caller.role,
    }))
}

/// HTML text escaping for the one server-rendered string (the login error).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(super::escape("<b a='x'>&"), "&lt;b a=&#39;x&#39;&gt;&amp;");
    }
}
