//! Fetching from a registry by digest: manifests into memory, blobs streamed to a temp file
//! in the store while hashing and counting (capped at the descriptor size), with retries and
//! backoff on 5xx and dropped connections, resumed with a range request where allowed.

use crate::defaults;
use crate::error::ImageError;
use crate::manifest::BlobRef;
use crate::store::Store;
use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use slipway_proto::Digest;
use std::io::{Seek, Write};
use std::time::Duration;

/// Called with each chunk's size as a blob downloads.
pub type OnBytes<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// One failed attempt: give up at once, or try again.
enum Attempt {
    Fatal(ImageError),
    Retry(String),
}

fn backoff(attempt: u32) -> Duration {
    let d = defaults::RETRY_BASE_DELAY.saturating_mul(1 << attempt.min(16));
    d.min(defaults::RETRY_MAX_DELAY)
}

fn registry_name(reference: &Reference) -> String {
    reference.registry().to_string()
}

/// Classifies an oci-client error: network trouble and 5xx are retried, the rest is final.
fn classify(e: OciDistributionError, what: &str, reference: &Reference) -> Attempt {
    let fatal = |reason: String| {
        Attempt::Fatal(ImageError::Registry {
            what: what.to_string(),
            registry: registry_name(reference),
            reason,
        })
    };
    match e {
        OciDistributionError::RequestError(e) => Attempt::Retry(format!("request failed: {e}")),
        OciDistributionError::IoError(e) => Attempt::Retry(format!("I/O error: {e}")),
        OciDistributionError::ServerError { code, message, .. } if code >= 500 || code == 429 => {
            Attempt::Retry(format!("HTTP {code}: {}", message.trim()))
        }
        OciDistributionError::ServerError { code, message, .. } => {
            fatal(format!("HTTP {code}: {}", message.trim()))
        }
        OciDistributionError::UnauthorizedError { .. } => fatal(
            "unauthorized: check the credentials for this registry in the agent config".into(),
        ),
        OciDistributionError::RegistryError { envelope, .. } => fatal(
            envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => fatal(other.to_string()),
    }
}

/// Fetches a manifest or index by digest; the bytes are checked against the digest here
/// (and by oci-client) before anything else looks at them.
pub async fn manifest(
    client: &Client,
    auth: &RegistryAuth,
    reference: &Reference,
    digest: &Digest,
    accepted: &[&str],
) -> Result<Vec<u8>, ImageError> {
    let what = format!("manifest {digest}");
    let mut last = String::new();
    for attempt in 0..defaults::RETRY_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        match client.pull_manifest_raw(reference, auth, accepted).await {
            Ok((bytes, _)) => {
                if bytes.len() as u64 > defaults::MAX_MANIFEST_BYTES {
                    return Err(ImageError::Rejected {
                        kind: "manifest",
                        digest: digest.clone(),
                        reason: format!(
                            "{} bytes, above the limit of {}",
                            bytes.len(),
                            defaults::MAX_MANIFEST_BYTES
                        ),
                    });
                }
                let seen = Digest::of(&bytes);
                if &seen != digest {
                    return Err(ImageError::DigestMismatch {
                        kind: "manifest",
                        digest: digest.clone(),
                        seen: seen.to_string(),
                    });
                }
                return Ok(bytes.to_vec());
            }
            Err(OciDistributionError::DigestError(DigestError::VerificationError {
                actual,
                ..
            })) => {
                return Err(ImageError::DigestMismatch {
                    kind: "manifest",
                    digest: digest.clone(),
                    seen: actual,
                })
            }
            Err(e) => match classify(e, &what, reference) {
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(why) => {
                    tracing::warn!(%digest, attempt, "fetching manifest: {why}; retrying");
                    last = why;
                }
            },
        }
    }
    Err(ImageError::Registry {
        what,
        registry: registry_name(reference),
        reason: format!(
            "gave up after {} attempts: {last}",
            defaults::RETRY_ATTEMPTS
        ),
    })
}

/// Downloads a blob into a temp file of the store, verifying size and digest. Returns the
/// verified temp file (the caller commits it) and the bytes transferred (more than the size
/// if a retry had to restart).
pub async fn blob(
    client: &Client,
    reference: &Reference,
    store: &Store,
    kind: &'static str,
    blob: &BlobRef,
    on_bytes: OnBytes<'_>,
) -> Result<(tempfile::NamedTempFile, u64), ImageError> {
    let mut tmp = store.temp_file(kind, &blob.digest)?;
    let desc = OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.to_string(),
        size: blob.size as i64,
        urls: None,
        ..OciDescriptor::default()
    };
    let what = format!("{kind} {}", blob.digest);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut written: u64 = 0;
    let mut transferred: u64 = 0;
    let mut last = String::new();
    let mut done = false;
    for attempt in 0..defaults::RETRY_ATTEMPTS {
        if attempt > 0 {
            tracing::warn!(digest = %blob.digest, attempt, written, "fetching {kind}: {last}; retrying");
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        let response = if written == 0 {
            client
                .pull_blob_stream(reference, &desc)
                .await
                .map(BlobResponse::Full)
        } else {
            client
                .pull_blob_stream_partial(reference, &desc, written, None)
                .await
        };
        let mut stream = match response {
            Ok(BlobResponse::Partial(s)) => s,
            Ok(BlobResponse::Full(s)) => {
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
                s
            }
            Err(e) => match classify(e, &what, reference) {
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(why) => {
                    last = why;
                    continue;
                }
            },
        };
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
                // oci-client's own digest check fires at the end of the stream; ours decides.
                Err(_) if written == blob.size => break,
                Err(e) => {
                    failed = Some(format!(
                        "connection failed after {written} of {} bytes: {e}",
                        blob.size
                    ));
                    break;
                }
            }
        }
        match failed {
            Some(why) => last = why,
            None if written < blob.size => {
                last = format!("stream ended after {written} of {} bytes", blob.size)
            }
            None => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return Err(ImageError::Registry {
            what,
            registry: registry_name(reference),
            reason: format!(
                "gave up after {} attempts: {last}",
                defaults::RETRY_ATTEMPTS
            ),
        });
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
