//! The dashboard's session over plain HTTP: a login with an operator token sets an HttpOnly,
//! SameSite=Strict cookie; `/v1` takes that cookie only with `X-Slipway-UI: 1` and the
//! controller's own `Origin`; agent, unknown and revoked tokens get nowhere; logout ends it.
//! (The page itself is tested in a real browser: tests/tests/dashboard.rs.)

mod support;

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use slipway_proto::api::Role;
use support::*;

struct Browserish {
    http: reqwest::Client,
    url: String,
}

impl Browserish {
    fn new(h: &Harness) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            url: h.url.clone(),
        }
    }

    /// Posts the login form; the status, the redirect target, the cookie set and the body.
    async fn login(&self, token: &str, origin: &str) -> (StatusCode, String, String, String) {
        let r = self
            .http
            .post(format!("{}/ui/login", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(ORIGIN, origin)
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        let header = |name| {
            r.headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (location, cookie) = (header(LOCATION), header(SET_COOKIE));
        (r.status(), location, cookie, r.text().await.unwrap())
    }

    async fn get(&self, path: &str, cookie: &str, ui: bool, origin: Option<&str>) -> StatusCode {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .header(COOKIE, cookie);
        if ui {
            req = req.header("x-slipway-ui", "1");
        }
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        req.send().await.unwrap().status()
    }
}

#[tokio::test]
async fn a_session_cookie_opens_the_api_only_to_the_dashboard_and_only_while_its_token_lives() {
    let h = Harness::start().await;
    let viewer = h.token("viewer", Role::ReadOnly, None).await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let b = Browserish::new(&h);
    let own = format!("http://{}", h.addr);

    // No session: the dashboard redirects to the login form, which is served.
    let r = b.http.get(format!("{}/ui/", h.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
    let r = b
        .http
        .get(format!("{}/ui/login", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains("id=\"login-form\""));

    // Unknown, agent and foreign-origin logins: the form again with the reason, no cookie.
    let (s, _, cookie, body) = b.login("swt_nope", &own).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        cookie.is_empty() && body.contains("unknown or revoked token"),
        "{body}"
    );
    let (s, _, cookie, body) = b.login(&agent, &own).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(cookie.is_empty(), "{cookie}");
    assert!(
        body.contains("agent token `agent-h1` cannot open the dashboard"),
        "{body}"
    );
    let (s, _, cookie, body) = b.login(&viewer, "https://evil.example").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(cookie.is_empty() && body.contains("evil.example"), "{body}");

    // A good login: a session cookie, HttpOnly and SameSite=Strict, and a redirect.
    let (s, location, set_cookie, _) = b.login(&viewer, &own).await;
    assert_eq!((s, location.as_str()), (StatusCode::SEE_OTHER, "/ui/"));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(
        !cookie.contains(&viewer),
        "the cookie holds a session id, not the token"
    );

    let r = b
        .http
        .get(format!("{}/ui/", h.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let (s, who) = decode(
        b.http
            .get(format!("{}/ui/session", h.url))
            .header(COOKIE, &cookie)
            .header("x-slipway-ui", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str()),
        (Some("viewer"), Some("read-only"))
    );

    // The API: with the dashboard's header (and its own origin) yes; the cookie alone or
    // from another origin, no. Read-only stays read-only.
    assert_eq!(b.get("/v1/apps", &cookie, true, None).await, StatusCode::OK);
    assert_eq!(
        b.get("/v1/apps", &cookie, true, Some(&own)).await,
        StatusCode::OK
    );
    assert_eq!(
        b.get("/v1/apps", &cookie, false, None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.get("/v1/apps", &cookie, true, Some("https://evil.example"))
            .await,
        StatusCode::FORBIDDEN
    );
    let r = b
        .http
        .post(format!("{}/v1/apps/web/rollout/pause", h.url))
        .header(COOKIE, &cookie)
        .header("x-slipway-ui", "1")
        .header(ORIGIN, &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Revoked token: the session ends at once.
    let r = h
        .http
        .delete(format!("{}/v1/tokens/viewer", h.url))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        b.get("/v1/apps", &cookie, true, None).await,
        StatusCode::UNAUTHORIZED
    );
    let r = b
        .http
        .get(format!("{}/ui/", h.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/ui/login");

    // Logout: the cookie is cleared and the session forgotten.
    let (_, _, set_cookie, _) = b.login(&h.admin, &own).await;
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert_eq!(
        b.get("/v1/hosts", &cookie, true, None).await,
        StatusCode::OK
    );
    let r = b
        .http
        .post(format!("{}/ui/logout", h.url))
        .header(COOKIE, &cookie)
        .header("x-slipway-ui", "1")
        .header(ORIGIN, &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        b.get("/v1/hosts", &cookie, true, None).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_expired_session_goes_back_to_the_login_form() {
    let h = Harness::start_with("[ui]\nsession_ttl = \"1s\"").await;
    let b = Browserish::new(&h);
    let own = format!("http://{}", h.addr);
    let (s, _, set_cookie, _) = b.login(&h.admin, &own).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(set_cookie.contains("Max-Age=1"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert_eq!(b.get("/v1/apps", &cookie, true, None).await, StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let (s, v) = decode(
        b.http
            .get(format!("{}/v1/apps", h.url))
            .header(COOKIE, &cookie)
            .header("x-slipway-ui", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"].as_str().unwrap().contains("session expired"),
        "{v}"
    );
    let r = b
        .http
        .get(format!("{}/ui/", h.url))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/ui/login");
    // The token itself is fine: a new login works.
    let (s, _, _, _) = b.login(&h.admin, &own).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
}
