//! Fault injection with a fake registry: tampered manifest, tampered layer, wrong size,
//! truncated stream, 500s and dropped connections. Each refusal names the digest and the
//! reason, and leaves nothing outside the store (nor unverified data inside it).

mod common;

use common::{FakeRegistry, Fault};
use slipway_image::{Puller, RegistryConfig, Store};
use slipway_proto::ImageRef;
use slipway_tests::image::{busybox_httpd_image, Image, ImageBuilder, Layer, MEDIA_MANIFEST};
use std::path::Path;

struct Case {
    fake: FakeRegistry,
    outer: tempfile::TempDir,
    image: Image,
}

async fn case() -> Case {
    let fake = FakeRegistry::start().await;
    let image = busybox_httpd_image("fault injection");
    fake.add_image("demo/web", &image);
    Case {
        fake,
        outer: tempfile::tempdir().unwrap(),
        image,
    }
}

impl Case {
    fn store(&self) -> std::path::PathBuf {
        self.outer.path().join("store")
    }

    fn reference(&self, digest: &slipway_proto::Digest) -> ImageRef {
        format!("{}/demo/web@{digest}", self.fake.addr)
            .parse()
            .unwrap()
    }

    async fn pull(&self) -> Result<slipway_image::PulledImage, slipway_image::ImageError> {
        self.pull_ref(&self.reference(&self.image.manifest_digest))
            .await
    }

    async fn pull_ref(
        &self,
        r: &ImageRef,
    ) -> Result<slipway_image::PulledImage, slipway_image::ImageError> {
        let cfg = RegistryConfig {
            insecure: vec![self.fake.addr.clone()],
            ..Default::default()
        };
        Puller::new(Store::open(&self.store()).unwrap(), cfg)
            .pull(r)
            .await
    }

    fn blob_path(&self, kind: &str, d: &slipway_proto::Digest) -> String {
        format!("/v2/demo/web/{kind}/{d}")
    }

    /// Nothing but `store/` around it; `tmp/` empty; no layer dir; only `allowed` blobs.
    fn assert_clean(&self, allowed: &[&slipway_proto::Digest]) {
        let names: Vec<_> = std::fs::read_dir(self.outer.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["store"], "nothing outside the store");
        let count = |p: &Path| std::fs::read_dir(p).unwrap().count();
        assert_eq!(count(&self.store().join("tmp")), 0, "tmp/ cleaned");
        assert_eq!(count(&self.store().join("layers")), 0, "no layer dir");
        for e in std::fs::read_dir(self.store().join("blobs/sha256"))
            .unwrap()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                allowed.iter().any(|d| d.hex() == name),
                "unexpected blob {name}"
            );
        }
    }
}

#[tokio::test]
async fn tampered_manifest_is_refused() {
    let c = case().await;
    let mut tampered = c.image.manifest.clone();
    tampered.push(b' ');
    c.fake.fault(
        &c.blob_path("manifests", &c.image.manifest_digest),
        Fault::Replace(tampered.clone()),
    );
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("manifest {} rejected", c.image.manifest_digest)),
        "{err}"
    );
    assert!(
        err.contains(&slipway_proto::Digest::of(&tampered).to_string()),
        "names the digest seen: {err}"
    );
    c.assert_clean(&[]);
}

#[tokio::test]
async fn tampered_layer_is_refused() {
    let c = case().await;
    let layer = &c.image.layers[1];
    let mut bytes = layer.bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    c.fake.fault(
        &c.blob_path("blobs", &layer.digest),
        Fault::Replace(bytes.clone()),
    );
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "layer {} rejected: content hashes to {}",
            layer.digest,
            slipway_proto::Digest::of(&bytes)
        )),
        "{err}"
    );
    let base = &c.image.layers[0];
    // The honest base layer may complete; the tampered one never appears.
    let _ = std::fs::remove_dir_all(c.store().join("layers").join(base.diff_id.hex()));
    c.assert_clean(&[
        &c.image.manifest_digest,
        &c.image.config_digest,
        &base.digest,
    ]);
}

#[tokio::test]
async fn more_bytes_than_declared_is_refused() {
    let c = case().await;
    let layer = &c.image.layers[1];
    let mut bytes = layer.bytes.clone();
    bytes.extend_from_slice(&[0u8; 4096]);
    c.fake
        .fault(&c.blob_path("blobs", &layer.digest), Fault::Replace(bytes));
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "layer {} rejected: registry sent more than the {} bytes the descriptor declares",
            layer.digest,
            layer.size()
        )),
        "{err}"
    );
    let base = &c.image.layers[0];
    let _ = std::fs::remove_dir_all(c.store().join("layers").join(base.diff_id.hex()));
    c.assert_clean(&[
        &c.image.manifest_digest,
        &c.image.config_digest,
        &base.digest,
    ]);
}

#[tokio::test]
async fn descriptor_size_larger_than_blob_is_refused() {
    let fake = FakeRegistry::start().await;
    let outer = tempfile::tempdir().unwrap();
    let layer = Layer::from_tar(
        &slipway_tests::image::TarBuilder::new()
            .file("f", b"x", 0o644)
            .finish(),
        slipway_tests::image::Compression::Gzip,
    );
    let mut image = ImageBuilder::new().layer(layer.clone()).build();
    // Lie about the layer size in the manifest (and re-pin the manifest digest).
    let mut m = image.manifest_json();
    m["layers"][0]["size"] = serde_json::json!(layer.size() + 10);
    image.manifest = serde_json::to_vec(&m).unwrap();
    image.manifest_digest = slipway_proto::Digest::of(&image.manifest);
    fake.add_image("demo/web", &image);
    let c = Case { fake, outer, image };
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("layer {}", layer.digest))
            && err.contains(&format!(
                "stream ended after {} of {} bytes",
                layer.size(),
                layer.size() + 10
            )),
        "{err}"
    );
    c.assert_clean(&[&c.image.manifest_digest, &c.image.config_digest]);
}

#[tokio::test]
async fn truncated_stream_fails_after_retries() {
    let c = case().await;
    let layer = &c.image.layers[0];
    c.fake
        .fault(&c.blob_path("blobs", &layer.digest), Fault::Truncate(1000));
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("fetching layer {}", layer.digest))
            && err.contains("gave up after 5 attempts"),
        "{err}"
    );
    let other = &c.image.layers[1];
    let _ = std::fs::remove_dir_all(c.store().join("layers").join(other.diff_id.hex()));
    c.assert_clean(&[
        &c.image.manifest_digest,
        &c.image.config_digest,
        &other.digest,
    ]);
}

#[tokio::test]
async fn registry_500s_are_retried() {
    let c = case().await;
    let m = c.blob_path("manifests", &c.image.manifest_digest);
    let l = c.blob_path("blobs", &c.image.layers[0].digest);
    c.fake.fault(&m, Fault::Status500(2));
    c.fake.fault(&l, Fault::Status500(2));
    let pulled = c.pull().await.unwrap();
    assert_eq!(pulled.report.layers_fetched, 2);
    assert_eq!(c.fake.hits(&m), 3);
    assert_eq!(c.fake.hits(&l), 3);
}

#[tokio::test]
async fn registry_500s_forever_fail_with_the_status() {
    let c = case().await;
    let m = c.blob_path("manifests", &c.image.manifest_digest);
    c.fake.fault(&m, Fault::Status500(usize::MAX));
    let err = c.pull().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("manifest {}", c.image.manifest_digest)) && err.contains("HTTP 500"),
        "{err}"
    );
    c.assert_clean(&[]);
}

#[tokio::test]
async fn dropped_connection_is_resumed_with_a_range() {
    let c = case().await;
    let layer = &c.image.layers[0];
    let path = c.blob_path("blobs", &layer.digest);
    c.fake.fault(&path, Fault::DropOnce(100_000));
    let pulled = c.pull().await.unwrap();
    assert_eq!(
        std::fs::read(pulled.layer_dirs[0].join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        c.fake.ranges(),
        [format!("{path} bytes=100000-")],
        "resumed where it stopped"
    );
    assert_eq!(
        pulled.report.bytes_fetched,
        c.image.manifest.len() as u64
            + c.image.config.len() as u64
            + c.image.layers.iter().map(|l| l.size()).sum::<u64>()
    );
}

#[tokio::test]
async fn tag_instead_of_digest_is_refused_before_any_request() {
    let c = case().await;
    let err = format!("{}/demo/web:v1", c.fake.addr)
        .parse::<ImageRef>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("names a tag, not a digest"), "{err}");
    assert_eq!(c.fake.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn index_with_wrong_child_platform_is_refused() {
    // The index claims the child is for this host, but the child's config says otherwise.
    let c = case().await;
    let other = if slipway_tests::image::host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let child = ImageBuilder::new()
        .layer_from_files(&[("x", b"y")])
        .platform("linux", other)
        .build();
    c.fake.add_image("demo/web", &child);
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": slipway_tests::image::MEDIA_INDEX, "manifests": [
        {"mediaType": MEDIA_MANIFEST, "digest": child.manifest_digest.to_string(), "size": child.manifest.len(),
         "platform": {"os": "linux", "architecture": slipway_tests::image::host_arch()}}]});
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = slipway_proto::Digest::of(&bytes);
    let mut img = c.image.clone();
    img.manifest = bytes;
    img.manifest_digest = d.clone();
    c.fake.add_image("demo/web", &img);
    let err = c.pull_ref(&c.reference(&d)).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("config {}", child.config_digest))
            && err.contains(&format!("is for linux/{other}")),
        "{err}"
    );
}
