//! Reading manifests, indexes and configs from bytes whose digest was already checked:
//! refuse schema1, documents mixing `manifests` with `layers`/`config`, foreign layer URLs,
//! unknown media types, and negative or absurd sizes; pick linux + this host's architecture
//! out of an index.

use crate::defaults;
use crate::error::ImageError;
use oci_spec::image::ImageConfiguration;
use serde_json::Value;
use slipway_proto::Digest;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What we ask the registry for. Schema1 is deliberately absent.
pub const ACCEPTED_MANIFESTS: &[&str] = &[
    MEDIA_OCI_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_DOCKER_LIST,
];
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// A checked descriptor: sha256 digest, sane size, no foreign URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A checked image manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub config: BlobRef,
    pub layers: Vec<(BlobRef, Compression)>,
}

/// A checked manifest or index.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    /// Entries of an index: descriptor plus `(os, architecture)`.
    Index(Vec<(BlobRef, Option<(String, String)>)>),
}

fn reject(kind: &'static str, digest: &Digest, reason: impl Into<String>) -> ImageError {
    ImageError::Rejected {
        kind,
        digest: digest.clone(),
        reason: reason.into(),
    }
}

/// Parses and checks a manifest or index whose bytes hash to `digest`.
pub fn parse_document(digest: &Digest, bytes: &[u8]) -> Result<Document, ImageError> {
    const KIND: &str = "manifest";
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| reject(KIND, digest, format!("not valid JSON: {e}")))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| reject(KIND, digest, "not a JSON object"))?;
    let media_type = obj.get("mediaType").and_then(Value::as_str).unwrap_or("");
    match obj.get("schemaVersion").and_then(Value::as_i64) {
        Some(2) => {}
        Some(1) => return Err(reject(KIND, digest, "schema1 manifests are not supported (deprecated and unsigned by digest); push the image with a current tool")),
        other => return Err(reject(KIND, digest, format!("schemaVersion {other:?} is not supported (expected 2)"))),
    }
    if media_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
        return Err(reject(
            KIND,
            digest,
            format!("schema1 media type `{media_type}` is not supported"),
        ));
    }
    let has_manifests = obj.contains_key("manifests");
    if has_manifests && (obj.contains_key("layers") || obj.contains_key("config")) {
        return Err(reject(
            KIND,
            digest,
            "document mixes `manifests` (an index) with `layers`/`config` (a manifest)",
        ));
    }
    if has_manifests {
        if !media_type.is_empty()
            && media_type != MEDIA_OCI_INDEX
            && media_type != MEDIA_DOCKER_LIST
        {
            return Err(reject(
                KIND,
                digest,
                format!("index has media type `{media_type}`"),
            ));
        }
        let entries = obj["manifests"]
            .as_array()
            .ok_or_else(|| reject(KIND, digest, "`manifests` is not an array"))?;
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let d = descriptor(
                KIND,
                digest,
                &format!("manifests[{i}]"),
                e,
                defaults::MAX_MANIFEST_BYTES,
            )?;
            let platform = e.get("platform").and_then(|p| {
                Some((
                    p.get("os")?.as_str()?.to_string(),
                    p.get("architecture")?.as_str()?.to_string(),
                ))
            });
            out.push((d, platform));
        }
        return Ok(Document::Index(out));
    }
    if !media_type.is_empty()
        && media_type != MEDIA_OCI_MANIFEST
        && media_type != MEDIA_DOCKER_MANIFEST
    {
        return Err(reject(
            KIND,
            digest,
            format!("unsupported media type `{media_type}`"),
        ));
    }
    let config = obj
        .get("config")
        .ok_or_else(|| reject(KIND, digest, "has neither `manifests` nor `config`"))?;
    let config = descriptor(KIND, digest, "config", config, defaults::MAX_CONFIG_BYTES)?;
    if !CONFIG_TYPES.contains(&config.media_type.as_str()) {
        return Err(reject(
            KIND,
            digest,
            format!(
                "config media type `{}` is not an image config",
                config.media_type
            ),
        ));
    }
    let layers = obj
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| reject(KIND, digest, "`layers` is missing or not an array"))?;
    if layers.len() > defaults::MAX_LAYERS {
        return Err(reject(
            KIND,
            digest,
            format!(
                "{} layers exceed the limit of {}",
                layers.len(),
                defaults::MAX_LAYERS
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let d = descriptor(
            KIND,
            digest,
            &format!("layers[{i}]"),
            l,
            defaults::MAX_LAYER_BYTES,
        )?;
        let c = Compression::of_media_type(&d.media_type).ok_or_else(|| {
            let why =
                if d.media_type.contains("foreign") || d.media_type.contains("nondistributable") {
                    "is a foreign (non-distributable) layer"
                } else {
                    "is not a supported layer type (tar, tar+gzip, tar+zstd)"
                };
            reject(
                KIND,
                digest,
                format!("layers[{i}] media type `{}` {why}", d.media_type),
            )
        })?;
        out.push((d, c));
    }
    Ok(Document::Manifest(Manifest {
        config,
        layers: out,
    }))
}

fn descriptor(
    kind: &'static str,
    digest: &Digest,
    at: &str,
    v: &Value,
    max: u64,
) -> Result<BlobRef, ImageError> {
    let d = v.get("digest").and_then(Value::as_str).unwrap_or("");
    let blob: Digest = d.parse().map_err(|_| {
        reject(
            kind,
            digest,
            format!("{at}: digest `{d}` is not sha256:<64 hex>"),
        )
    })?;
    if v.get("urls")
        .and_then(Value::as_array)
        .is_some_and(|u| !u.is_empty())
    {
        return Err(reject(
            kind,
            digest,
            format!(
                "{at} ({blob}) has foreign URLs; only blobs from the registry itself are pulled"
            ),
        ));
    }
    let size = match v.get("size") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|s| s < 0) => {
            return Err(reject(
                kind,
                digest,
                format!("{at} ({blob}) has negative size {n}"),
            ))
        }
        other => {
            return Err(reject(
                kind,
                digest,
                format!("{at} ({blob}) has no valid size: {other:?}"),
            ))
        }
    };
    if size > max {
        return Err(reject(
            kind,
            digest,
            format!("{at} ({blob}) declares {size} bytes, above the limit of {max}"),
        ));
    }
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(BlobRef {
        digest: blob,
        size,
        media_type,
    })
}

/// This host's platform as OCI names it.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// Picks the linux + host-architecture entry of an index.
pub fn select_platform(
    index_digest: &Digest,
    entries: &[(BlobRef, Option<(String, String)>)],
) -> Result<BlobRef, ImageError> {
    let (os, arch) = host_platform();
    let found = entries
        .iter()
        .find(|(_, p)| p.as_ref().is_some_and(|(o, a)| o == os && a == arch));
    match found {
        Some((d, _)) if d.media_type == MEDIA_OCI_INDEX || d.media_type == MEDIA_DOCKER_LIST => {
            Err(reject(
                "index",
                index_digest,
                format!("entry for {os}/{arch} ({}) is itself an index", d.digest),
            ))
        }
        Some((d, _)) => Ok(d.clone()),
        None => {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|(_, p)| p.as_ref().map(|(o, a)| format!("{o}/{a}")))
                .collect();
            Err(reject(
                "index",
                index_digest,
                format!("no manifest for {os}/{arch} (has: {})", have.join(", ")),
            ))
        }
    }
}

/// Parses an image config whose bytes hash to `digest` and checks it against the manifest.
pub fn parse_config(
    digest: &Digest,
    bytes: &[u8],
    layers: usize,
) -> Result<(ImageConfiguration, Vec<Digest>), ImageError> {
    let config: ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| reject("config", digest, format!("not an OCI image config: {e}")))?;
    if config.rootfs().typ() != "layers" {
        return Err(reject(
            "config",
            digest,
            format!(
                "rootfs.type is `{}`, expected `layers`",
                config.rootfs().typ()
            ),
        ));
    }
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse::<Digest>().map_err(|_| {
                reject(
                    "config",
                    digest,
                    format!("diff_id `{d}` is not sha256:<64 hex>"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != layers {
        return Err(reject(
            "config",
            digest,
            format!("lists {} diff_ids for {layers} layers", diff_ids.len()),
        ));
    }
    Ok((config, diff_ids))
}

/// Checks a config's platform against the index entry it was chosen by.
pub fn check_platform(digest: &Digest, config: &ImageConfiguration) -> Result<(), ImageError> {
    let (os, arch) = host_platform();
    let (cos, carch) = (config.os().to_string(), config.architecture().to_string());
    if cos != os || carch != arch {
        return Err(reject(
            "config",
            digest,
            format!("is for {cos}/{carch}, this host is {os}/{arch}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
