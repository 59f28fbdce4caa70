//! The registry side of test images: blobs and manifests pushed and fetched over the
//! distribution HTTP API.

use super::{http, MEDIA_INDEX, MEDIA_MANIFEST};
use anyhow::{bail, Context};
use slipway_proto::Digest;

/// Uploads a blob (monolithic POST + PUT) unless the registry already has it.
pub fn push_blob(registry_addr: &str, repo: &str, bytes: &[u8]) -> anyhow::Result<Digest> {
    let digest = Digest::of(bytes);
    let head = http::request(
        registry_addr,
        "HEAD",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        &[],
    )?;
    if head.status == 200 {
        return Ok(digest);
    }
    let start = http::request(
        registry_addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    )?;
    if start.status != 202 {
        bail!(
            "starting upload of blob {digest} to {registry_addr}/{repo}: HTTP {}: {}",
            start.status,
            start.text()
        );
    }
    let location = start
        .header("location")
        .context("upload start without Location")?;
    let path = location
        .strip_prefix(&format!("http://{registry_addr}"))
        .unwrap_or(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let put = http::request(
        registry_addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )?;
    if put.status != 201 {
        bail!(
            "uploading blob {digest} to {registry_addr}/{repo}: HTTP {}: {}",
            put.status,
            put.text()
        );
    }
    Ok(digest)
}

/// Puts a manifest or index (any bytes) under `reference` (tag or digest); returns the digest
/// the registry reports.
pub fn push_manifest(
    registry_addr: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> anyhow::Result<Digest> {
    let resp = http::request(
        registry_addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        bytes,
    )?;
    if resp.status != 201 {
        bail!(
            "putting manifest {repo}:{reference} to {registry_addr}: HTTP {}: {}",
            resp.status,
            resp.text()
        );
    }
    let digest = resp
        .header("docker-content-digest")
        .context("manifest PUT without Docker-Content-Digest")?;
    digest
        .parse()
        .map_err(|e| anyhow::anyhow!("registry digest {digest}: {e}"))
}

/// Fetches a manifest by tag or digest: `(bytes, content type)`.
pub fn get_manifest(
    registry_addr: &str,
    repo: &str,
    reference: &str,
) -> anyhow::Result<(Vec<u8>, String)> {
    let accept = format!(
        "{MEDIA_MANIFEST}, {MEDIA_INDEX}, application/vnd.docker.distribution.manifest.v2+json"
    );
    let resp = http::request(
        registry_addr,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", &accept)],
        &[],
    )?;
    if resp.status != 200 {
        bail!(
            "getting manifest {repo}:{reference}: HTTP {}: {}",
            resp.status,
            resp.text()
        );
    }
    let ct = resp.header("content-type").unwrap_or_default().to_string();
    Ok((resp.body, ct))
}

/// Fetches a blob by digest.
pub fn get_blob(registry_addr: &str, repo: &str, digest: &Digest) -> anyhow::Result<Vec<u8>> {
    let resp = http::request(
        registry_addr,
        "GET",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        &[],
    )?;
    if resp.status != 200 {
        bail!(
            "getting blob {digest}: HTTP {}: {}",
            resp.status,
            resp.text()
        );
    }
    Ok(resp.body)
}
