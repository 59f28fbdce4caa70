//! Checking webhooks: GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the raw body), GitLab's
//! `X-Gitlab-Token`, and replayed delivery ids. A webhook that passes only means "sync now".

use ring::hmac;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("X-Hub-Signature-256 is not `sha256=<64 hex>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body: wrong secret or altered body")]
    BadSignature,
    #[error("X-Gitlab-Token does not match the configured token")]
    BadToken,
    #[error("delivery {0} was already received: replay rejected")]
    Replay(String),
}

/// Verifies `sha256=<hex>` against HMAC-SHA256(secret, body); ring compares in constant time.
pub fn verify_github(
    key: &hmac::Key,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::Missing("X-Hub-Signature-256"))?;
    let tag = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|t| t.len() == 32)
        .ok_or(WebhookError::Malformed)?;
    hmac::verify(key, body, &tag).map_err(|_| WebhookError::BadSignature)
}

/// Compares the presented GitLab token with ours in constant time (over their sha256, so the
/// length of the secret does not leak either).
pub fn verify_gitlab(expected: &[u8], header: Option<&str>) -> Result<(), WebhookError> {
    let presented = header.ok_or(WebhookError::Missing("X-Gitlab-Token"))?;
    let a = ring::digest::digest(&ring::digest::SHA256, expected);
    let b = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
    let diff = a
        .as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(WebhookError::BadToken)
    }
}

/// Why a webhook secret file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
}

/// An HMAC key from a secret file (trailing newline dropped, as editors add one).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let text = std::fs::read(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let end = text
        .iter()
        .rposition(|b| !b"\r\n".contains(b))
        .map_or(0, |i| i + 1);
    if end == 0 {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text[..end].to_vec())
}

/// Delivery ids already accepted, kept in memory and in an atomically replaced file, so a
/// replay is refused across controller restarts too. The oldest are forgotten first.
pub struct Deliveries {
    file: PathBuf,
    cap: usize,
    seen: Mutex<(VecDeque<String>, HashSet<String>)>,
}

impl Deliveries {
    pub fn load(file: PathBuf, cap: usize) -> Self {
        let order: VecDeque<String> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .unwrap_or_default()
            .into();
        let set = order.iter().cloned().collect();
        Deliveries {
            file,
            cap,
            seen: Mutex::new((order, set)),
        }
    }

    /// Records `id`; fails when it was seen before.
    pub fn accept(&self, id: &str) -> Result<(), WebhookError> {
        let mut seen = self.seen.lock().expect("deliveries lock");
        let (order, set) = &mut *seen;
        if !set.insert(id.to_string()) {
            return Err(WebhookError::Replay(id.to_string()));
        }
        order.push_back(id.to_string());
        while order.len() > self.cap {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        if let Err(e) = write_atomic(
            &self.file,
            &serde_json::to_vec(order).expect("ids serialize"),
        ) {
            // Still refused in memory; only a restart could let this one replay.
            tracing::warn!(file = %self.file.display(), error = %e, "saving webhook delivery ids failed");
        }
        Ok(())
    }
}

/// temp file + fsync + rename + fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example (docs: "Validating webhook deliveries").
    #[test]
    fn github_test_vector() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_github(&key, Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            verify_github(&key, Some(sig), b"Hello, World?"),
            Err(WebhookError::BadSignature)
        );
        let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"It's a Secret to Nobody");
        assert_eq!(
            verify_github(&wrong, Some(sig), b"Hello, World!"),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_github(&key, None, b"Hello, World!"),
            Err(WebhookError::Missing("X-Hub-Signature-256"))
        );
        for bad in [
            "757107ea",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=zz",
        ] {
            assert_eq!(
                verify_github(&key, Some(bad), b"Hello, World!"),
                Err(WebhookError::Malformed)
            );
        }
    }

    #[test]
    fn gitlab_token() {
        assert_eq!(verify_gitlab(b"tok", Some("tok")), Ok(()));
        assert_eq!(
            verify_gitlab(b"tok", Some("tok2")),
            Err(WebhookError::BadToken)
        );
        assert_eq!(verify_gitlab(b"tok", Some("")), Err(WebhookError::BadToken));
        assert!(verify_gitlab(b"tok", None).is_err());
    }

    #[test]
    fn replays_refused_across_reloads_and_oldest_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deliveries.json");
        let d = Deliveries::load(file.clone(), 2);
        d.accept("a").unwrap();
        assert_eq!(d.accept("a"), Err(WebhookError::Replay("a".into())));
        d.accept("b").unwrap();
        let d = Deliveries::load(file.clone(), 2);
        assert!(d.accept("b").is_err());
        d.accept("c").unwrap(); // forgets "a"
        d.accept("a").unwrap();
    }

    #[test]
    fn secret_file_trailing_newline_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "It's a Secret to Everybody\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), b"It's a Secret to Everybody");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_secret(&p).unwrap_err().to_string().contains("empty"));
    }
}
