//! One registry, spoken to over the distribution API: its TLS settings (CA, client
//! certificate), its credentials, and the auth handshake production registries use — a 401
//! with `WWW-Authenticate: Basic` (htpasswd) or `Bearer realm,service,scope` (Docker Hub,
//! GHCR, ECR, GCR: a token from the realm, fetched with the credentials). Every request
//! goes through the same handshake, so a fresh pull, a cached manifest and a resumed blob
//! all carry credentials.

use super::challenge::Challenge;
use super::error::{FailureKind, RegistryError};
use super::{credentials, name, Credentials, RegistryConfig};
use crate::defaults;
use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A connection to one registry with its credentials and cached tokens.
pub struct Session {
    registry: String,
    base: String,
    plain_http: bool,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// Bearer tokens by scope, with their expiry.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The registry asked for Basic auth: send it with every request.
    basic: AtomicBool,
}

/// A blob body: the whole blob, or the rest of it from the requested offset.
pub enum BlobBody {
    Full(Response),
    Partial(Response),
}

impl Session {
    /// Opens a session to `registry` (as written in references): looks up its credentials
    /// and builds its HTTP client with its CA and client certificate. `timeout` overrides
    /// the connect and read timeouts.
    pub async fn open(
        cfg: &RegistryConfig,
        registry: &str,
        timeout: Option<Duration>,
    ) -> Result<Session, RegistryError> {
        super::install_crypto_provider();
        let plain_http = cfg.insecure.iter().any(|r| r == registry);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout.unwrap_or(defaults::CONNECT_TIMEOUT))
            .read_timeout(timeout.unwrap_or(defaults::READ_TIMEOUT))
            .user_agent(defaults::USER_AGENT);
        if let Some(tls) = &cfg.tls_for(registry) {
            builder = tls.apply(builder, registry)?;
        }
        let http = builder.build().map_err(|e| {
            RegistryError::new(
                FailureKind::Config,
                format!("HTTP client for registry {registry}: {e}"),
            )
        })?;
        let credentials = credentials::lookup(cfg, registry).await?;
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Session {
            registry: registry.to_string(),
            base: format!("{scheme}://{}", name::api_host(registry)),
            plain_http,
            http,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// GETs a manifest (by tag or digest), at most `limit` bytes. Returns the bytes and
    /// the `Docker-Content-Digest` header, if any.
    pub async fn manifest(
        &self,
        path: &str,
        reference: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let url = format!("{}/v2/{path}/manifests/{reference}", self.base);
        let accept = accept.join(", ");
        let resp = self
            .send(path, |c| c.get(&url).header(ACCEPT, accept.as_str()))
            .await?;
        let resp = check(resp).await?;
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::transport(&e))?;
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(RegistryError::new(
                    FailureKind::Protocol,
                    format!("manifest {reference} is larger than the limit of {limit} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, digest))
    }

    /// GETs a blob, from byte `from` on when `from > 0` (the registry may ignore the range).
    pub async fn blob(
        &self,
        path: &str,
        digest: &str,
        from: u64,
    ) -> Result<BlobBody, RegistryError> {
        let url = format!("{}/v2/{path}/blobs/{digest}", self.base);
        let range = format!("bytes={from}-");
        let resp = self
            .send(path, |c| {
                let r = c.get(&url);
                if from > 0 {
                    r.header(RANGE, range.as_str())
                } else {
                    r
                }
            })
            .await?;
        let resp = check(resp).await?;
        Ok(if resp.status() == StatusCode::PARTIAL_CONTENT {
            BlobBody::Partial(resp)
        } else {
            BlobBody::Full(resp)
        })
    }

    /// Sends a request with the session's auth; answers one auth challenge and sends again.
    async fn send(
        &self,
        path: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let scope = format!("repository:{path}:pull");
        let mut answered = false;
        loop {
            let mut req = build(&self.http);
            if let Some(h) = self.auth_header(&scope) {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().await.map_err(|e| self.transport(&e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if answered {
                return Err(self.refused(resp).await);
            }
            answered = true;
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) => {
                    if let Some(Credentials::Bearer { .. }) = self.credentials {
                        return Err(self.refused(resp).await);
                    }
                    let scope_used = asked.unwrap_or_else(|| scope.clone());
                    let token = self
                        .fetch_token(&realm, service.as_deref(), &scope_used)
                        .await?;
                    let expiry = Instant::now() + token.1;
                    let mut tokens = self.tokens.lock().expect("token cache lock");
                    tokens.insert(scope.clone(), (token.0.clone(), expiry));
                    tokens.insert(scope_used, (token.0, expiry));
                }
                Some(Challenge::Basic) => match self.credentials {
                    Some(Credentials::Basic { .. }) => self.basic.store(true, Ordering::Relaxed),
                    _ => return Err(self.refused(resp).await),
                },
                None => return Err(self.refused(resp).await),
            }
        }
    }

    fn auth_header(&self, scope: &str) -> Option<HeaderValue> {
        let value = match &self.credentials {
            Some(Credentials::Bearer { token }) => format!("Bearer {token}"),
            creds => {
                let tokens = self.tokens.lock().expect("token cache lock");
                match (tokens.get(scope), creds) {
                    (Some((t, exp)), _) if *exp > Instant::now() => format!("Bearer {t}"),
                    (_, Some(Credentials::Basic { username, password }))
                        if self.basic.load(Ordering::Relaxed) =>
                    {
                        format!("Basic {}", basic(username, password))
                    }
                    _ => return None,
                }
            }
        };
        let mut h = HeaderValue::from_str(&value).ok()?;
        h.set_sensitive(true);
        Some(h)
    }

    /// Asks the token endpoint for a pull token, with the credentials when we have some.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), RegistryError> {
        let auth_err = |reason: String| RegistryError::new(FailureKind::Auth, reason);
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| auth_err(format!("token realm `{realm}` is not a URL: {e}")))?;
        if url.scheme() != "https" && !self.plain_http {
            return Err(auth_err(format!(
                "token realm `{realm}` is not HTTPS; credentials are only sent over TLS"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let req = match &self.credentials {
            // OAuth2 (the distribution token spec's POST form): the refresh token buys an
            // access token for this scope.
            Some(Credentials::IdentityToken { token }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", defaults::OAUTH_CLIENT_ID),
                    ("scope", scope),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let body = serde_urlencoded::to_string(&form).expect("strings encode");
                self.http
                    .post(realm)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            Some(Credentials::Basic { username, password }) => self
                .http
                .get(url.clone())
                .basic_auth(username, Some(password)),
            _ => self.http.get(url.clone()),
        };
        let resp = req.send().await.map_err(|e| RegistryError::transport(&e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(auth_err(format!(
                "token endpoint {realm} refused {} for {scope} (HTTP {})",
                self.who(),
                status.as_u16()
            )));
        }
        let resp = check(resp).await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = resp
            .json()
            .await
            .map_err(|e| auth_err(format!("token endpoint {realm} answered no token: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err(format!("token endpoint {realm} answered no token")))?;
        let ttl = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(defaults::TOKEN_DEFAULT_TTL);
        // Renew a little early rather than send a token that expires in flight.
        Ok((token, ttl.saturating_sub(defaults::TOKEN_EXPIRY_MARGIN)))
    }

    /// A transport error; a TLS one says which setting decides trust for this registry.
    fn transport(&self, e: &reqwest::Error) -> RegistryError {
        let mut err = RegistryError::transport(e);
        if err.kind == FailureKind::Tls {
            err.reason = format!(
                "{}; the registry's CA goes in [registry.tls.\"{}\"] ca_file",
                err.reason, self.registry
            );
        }
        err
    }

    fn who(&self) -> String {
        match &self.credentials {
            Some(Credentials::Basic { username, .. }) => format!("user `{username}`"),
            Some(Credentials::Bearer { .. }) => "the configured token".into(),
            Some(Credentials::IdentityToken { .. }) => "the identity token".into(),
            None => "anonymous access".into(),
        }
    }

    /// The auth error for a final 401.
    async fn refused(&self, resp: Response) -> RegistryError {
        let body = resp.text().await.unwrap_or_default();
        let status = RegistryError::status(401, &body);
        let hint = match &self.credentials {
            None => format!(
                "registry {} needs credentials and none are configured: add \
                 [registry.auth.\"{}\"] to agent.toml or a docker config.json",
                self.registry, self.registry
            ),
            Some(_) => format!("registry {} refused {}", self.registry, self.who()),
        };
        RegistryError::new(FailureKind::Auth, format!("{hint} ({})", status.reason))
    }
}

/// A success status passes; anything else becomes the classified error.
async fn check(resp: Response) -> Result<Response, RegistryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(RegistryError::status(status.as_u16(), &body))
}

fn basic(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}
