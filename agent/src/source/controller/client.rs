//! The HTTP client to the controller: trusted roots, the agent token, error answers, backoff.

use super::{BACKOFF_MAX, BACKOFF_MIN, CONNECT_TIMEOUT};
use anyhow::{bail, Context};
use slipway_proto::api::ErrorBody;
use std::path::Path;
use std::time::Duration;

pub(crate) fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("reading agent token file {}", path.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() {
        bail!("agent token file {} is empty", path.display());
    }
    Ok(t)
}

/// The client agents speak to the controller with: the system's roots, and `ca_cert`'s
/// certificates when given.
pub fn http_client(ca_cert: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading controller ca_cert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "controller ca_cert {}: not PEM certificates",
                path.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "controller ca_cert {}: no certificate in it",
                path.display()
            );
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("building the HTTP client")
}

/// What a 401 means for this host, and what the operator can do.
pub(super) fn refused_token(host: &impl std::fmt::Display) -> String {
    format!(
        "the controller refused host {host}'s agent token (401): the host was removed \
         (`slipway hosts remove`) or its token revoked; give it a new agent token in \
         token_file, or join it again (`slipway-agent join`)"
    )
}

pub(crate) async fn api_error(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let msg = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
    anyhow::anyhow!("controller answered {}: {msg}", status.as_u16())
}

/// Exponential backoff with jitter: between half and all of min * 2^(failures-1), capped.
pub(crate) fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let full = exp.min(BACKOFF_MAX);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    full.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for n in 1..40 {
            let d = backoff(n);
            assert!(d <= BACKOFF_MAX, "{n}: {d:?}");
            assert!(d >= BACKOFF_MIN / 2, "{n}: {d:?}");
        }
        assert!(backoff(20) >= BACKOFF_MAX / 2);
    }
}
