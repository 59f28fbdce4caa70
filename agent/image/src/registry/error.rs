//! How talking to a registry failed, in the terms an operator acts on: credentials, TLS,
//! the network, a missing image, or a registry that answered badly.

use std::fmt;

/// What kind of failure: each points at a different fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Credentials missing, wrong or not allowed to pull: fix `[registry.auth]`/config.json.
    Auth,
    /// The TLS handshake failed (unknown CA, bad client certificate): fix `[registry.tls]`.
    Tls,
    /// No connection, a dropped one, or a timeout: retried, then reported.
    Network,
    /// The registry has no such manifest or blob.
    NotFound,
    /// Any other HTTP error or a malformed answer.
    Protocol,
    /// The registry settings themselves (unreadable CA file, bad config.json, helper failure).
    Config,
}

impl FailureKind {
    /// A short, stable label (metrics, logs).
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Auth => "registry_auth",
            FailureKind::Tls => "registry_tls",
            FailureKind::Network => "registry_network",
            FailureKind::NotFound => "registry_not_found",
            FailureKind::Protocol => "registry",
            FailureKind::Config => "registry_config",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Auth => "authentication failed",
            FailureKind::Tls => "TLS failed",
            FailureKind::Network => "network failed",
            FailureKind::NotFound => "not found",
            FailureKind::Protocol => "registry error",
            FailureKind::Config => "registry settings",
        })
    }
}

/// One failed registry request. `retry` says whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {reason}")]
pub struct RegistryError {
    pub kind: FailureKind,
    pub reason: String,
    pub retry: bool,
}

impl RegistryError {
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        RegistryError {
            kind,
            reason: reason.into(),
            retry: kind == FailureKind::Network,
        }
    }

    /// An HTTP status that is neither success nor an auth challenge.
    pub fn status(code: u16, body: &str) -> Self {
        let detail = body_summary(body);
        let kind = match code {
            401 | 403 => FailureKind::Auth,
            404 => FailureKind::NotFound,
            _ => FailureKind::Protocol,
        };
        RegistryError {
            kind,
            reason: format!("HTTP {code}{detail}"),
            retry: code >= 500 || code == 429,
        }
    }

    /// Classifies a transport error: TLS when rustls refused the handshake, else network.
    pub fn transport(e: &reqwest::Error) -> Self {
        let chain = error_chain(e);
        if let Some(tls) = tls_cause(e) {
            return RegistryError::new(FailureKind::Tls, format!("{tls} ({chain})"));
        }
        // hyper-util's connect error hides the rustls error behind `io::Error::source`,
        // which skips the inner error: recognize rustls's own wording.
        let lower = chain.to_ascii_lowercase();
        if TLS_PHRASES.iter().any(|p| lower.contains(p)) {
            return RegistryError::new(FailureKind::Tls, format!("TLS handshake refused: {chain}"));
        }
        RegistryError::new(FailureKind::Network, chain)
    }
}

/// The distribution API's `{"errors":[{"code","message"}]}` as `: CODE message; ...`.
fn body_summary(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(env) if !env.errors.is_empty() => {
            let items: Vec<String> = env
                .errors
                .iter()
                .map(|i| format!("{} {}", i.code, i.message).trim().to_string())
                .collect();
            format!(": {}", items.join("; "))
        }
        _ if body.trim().is_empty() => String::new(),
        _ => format!(": {}", body.trim().chars().take(200).collect::<String>()),
    }
}

/// The rustls error somewhere in `e`'s source chain, as text.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("TLS handshake refused: {r}"));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(format!("TLS handshake refused: {r}"));
            }
        }
        cur = err.source();
    }
    None
}

/// How rustls words its handshake failures.
const TLS_PHRASES: &[&str] = &[
    "invalid peer certificate",
    "peer sent no certificates",
    "received fatal alert",
    "peer is incompatible",
    "peer misbehaved",
    "certificate",
];

/// `e` and its sources, joined with `: `.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        let e = RegistryError::status(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        assert_eq!(e.kind, FailureKind::Auth);
        assert_eq!(
            e.to_string(),
            "authentication failed: HTTP 401: UNAUTHORIZED authentication required"
        );
        assert!(!e.retry);
        assert_eq!(RegistryError::status(404, "").kind, FailureKind::NotFound);
        assert!(RegistryError::status(503, "busy").retry);
        assert!(RegistryError::status(429, "").retry);
    }
}
