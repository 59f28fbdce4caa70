//! Fetching from a registry by digest: manifests into memory, blobs streamed to a temp file
//! in the store while hashing and counting (capped at the descriptor size), with retries and
//! backoff on 5xx and dropped connections, resumed with a range request where allowed.
//! Auth, TLS and 4xx failures are final at once: retrying cannot fix them.

use crate::defaults;
use crate::error::ImageError;
use crate::manifest::BlobRef;
use crate::registry::{BlobBody, FailureKind, RegistryError, Repository, Session};
use crate::store::Store;
use futures_util::StreamExt;
use slipway_proto::Digest;
use std::io::{Seek, Write};
use std::time::Duration;

/// Called with each chunk's size as a blob downloads.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Send + Sync);

fn backoff(attempt: u32) -> Duration {
    let d = defaults::RETRY_BASE_DELAY.saturating_mul(1 << attempt.min(16));
    d.min(defaults::RETRY_MAX_DELAY)
}

fn registry_error(what: &str, repo: &Repository, failure: RegistryError) -> ImageError {
    ImageError::Registry {
        what: what.to_string(),
        repository: repo.to_string(),
        registry: repo.registry.clone(),
        failure,
    }
}

/// The final error after `RETRY_ATTEMPTS` retryable failures, the last one kept.
fn gave_up(what: &str, repo: &Repository, last: Option<RegistryError>) -> ImageError {
    let mut last = last.unwrap_or_else(|| RegistryError::new(FailureKind::Network, "no answer"));
    last.reason = format!(
        "gave up after {} attempts: {}",
        defaults::RETRY_ATTEMPTS,
        last.reason
    );
    registry_error(what, repo, last)
}

/// Fetches a manifest or index by digest; the bytes are checked against the digest here
/// before anything else looks at them.
pub async fn manifest(
    session: &Session,
    repo: &Repository,
    digest: &Digest,
    accepted: &[&str],
) -> Result<Vec<u8>, ImageError> {
    let what = format!("manifest {digest}");
    let mut last = None;
    for attempt in 0..defaults::RETRY_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        let limit = defaults::MAX_MANIFEST_BYTES;
        match session
            .manifest(&repo.path, &digest.to_string(), accepted, limit)
            .await
        {
            Ok((bytes, _)) => {
                let seen = Digest::of(&bytes);
                if &seen != digest {
                    return Err(ImageError::DigestMismatch {
                        kind: "manifest",
                        digest: digest.clone(),
                        seen: seen.to_string(),
                    });
                }
                return Ok(bytes);
            }
            Err(e) if e.retry => {
                tracing::warn!(%digest, attempt, "fetching manifest: {e}; retrying");
                last = Some(e);
            }
            Err(e) if e.kind == FailureKind::Protocol && e.reason.contains("limit") => {
                return Err(ImageError::Rejected {
                    kind: "manifest",
                    digest: digest.clone(),
                    reason: e.reason,
                })
            }
            Err(e) => return Err(registry_error(&what, repo, e)),
        }
    }
    Err(gave_up(&what, repo, last))
}

/// Downloads a blob into a temp file of the store, verifying size and digest. Returns the
/// verified temp file (the caller commits it) and the bytes transferred (more than the size
/// if a retry had to restart).
pub async fn blob(
    session: &Session,
    repo: &Repository,
    store: &Store,
    kind: &'static str,
    blob: &BlobRef,
    on_bytes: OnBytes<'_>,
) -> Result<(tempfile::NamedTempFile, u64), ImageError> {
    let mut tmp = store.temp_file(kind, &blob.digest)?;
    let what = format!("{kind} {}", blob.digest);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut written: u64 = 0;
    let mut transferred: u64 = 0;
    let mut last: Option<RegistryError> = None;
    let mut done = false;
    for attempt in 0..defaults::RETRY_ATTEMPTS {
        if attempt > 0 {
            if let Some(e) = &last {
                tracing::warn!(digest = %blob.digest, attempt, written, "fetching {kind}: {e}; retrying");
            }
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        let resp = match session
            .blob(&repo.path, &blob.digest.to_string(), written)
            .await
        {
            Ok(BlobBody::Partial(r)) if written > 0 => r,
            Ok(BlobBody::Partial(r)) | Ok(BlobBody::Full(r)) => {
                if written > 0 {
                    // The registry ignored the range: start over.
                    tmp.as_file_mut()
                        .set_len(0)
                        .map_err(ImageError::io(tmp.path()))?;
                    tmp.as_file_mut()
                        .rewind()
                        .map_err(ImageError::io(tmp.path()))?;
                    ctx = ring::digest::Context::new(&ring::digest::SHA256);
                    written = 0;
                }
                r
            }
            Err(e) if e.retry => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(registry_error(&what, repo, e)),
        };
        let mut stream = resp.bytes_stream();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    let n = bytes.len() as u64;
                    if written + n > blob.size {
                        return Err(ImageError::Rejected {
                            kind,
                            digest: blob.digest.clone(),
                            reason: format!(
                                "registry sent more than the {} bytes the descriptor declares",
                                blob.size
                            ),
                        });
                    }
                    tmp.write_all(&bytes).map_err(ImageError::io(tmp.path()))?;
                    ctx.update(&bytes);
                    written += n;
                    transferred += n;
                    on_bytes(n);
                }
                Err(e) => {
                    let mut e = RegistryError::transport(&e);
                    e.reason = format!(
                        "connection failed after {written} of {} bytes: {}",
                        blob.size, e.reason
                    );
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) => last = Some(e),
            None if written < blob.size => {
                last = Some(RegistryError::new(
                    FailureKind::Network,
                    format!("stream ended after {written} of {} bytes", blob.size),
                ))
            }
            None => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return Err(gave_up(&what, repo, last));
    }
    let seen = hex::encode(ctx.finish());
    if seen != blob.digest.hex() {
        return Err(ImageError::DigestMismatch {
            kind,
            digest: blob.digest.clone(),
            seen: format!("sha256:{seen}"),
        });
    }
    tmp.as_file()
        .sync_all()
        .map_err(ImageError::io(tmp.path()))?;
    Ok((tmp, transferred))
}
