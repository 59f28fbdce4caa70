//! Pulls from a real `docker-registry` on loopback.

use slipway_image::{Puller, RegistryConfig, Store};
use slipway_proto::ImageRef;
use slipway_tests::image::{
    busybox_httpd_image, Compression, ImageBuilder, Index, Layer, TarBuilder,
};
use slipway_tests::registry::Registry;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn puller(reg: &Registry, store: &std::path::Path) -> Puller {
    let cfg = RegistryConfig {
        insecure: vec![reg.addr().to_string()],
        ..Default::default()
    };
    Puller::new(Store::open(store).unwrap(), cfg)
}

#[tokio::test]
async fn pulls_busybox_and_reuses_the_shared_layer() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = puller(&reg, dir.path());

    let v1 = busybox_httpd_image("page v1")
        .push(reg.addr(), "demo/web", "v1")
        .unwrap();
    let image: ImageRef = v1.image_ref().parse().unwrap();
    let pulled = p.pull(&image).await.unwrap();
    assert_eq!(pulled.manifest_digest, v1.digest);
    assert_eq!(pulled.layer_dirs.len(), 2);
    assert_eq!(pulled.report.layers_fetched, 2);
    assert_eq!(pulled.report.layers_cached, 0);
    let base = &pulled.layer_dirs[0];
    assert_eq!(
        std::fs::read(base.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(base.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(
        base.join("bin/busybox").metadata().unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(base.join("tmp").metadata().unwrap().mode() & 0o7777, 0o1777);
    assert_eq!(
        std::fs::read_to_string(pulled.layer_dirs[1].join("www/index.html")).unwrap(),
        "page v1"
    );
    assert_eq!(
        pulled
            .config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap(),
        &["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"].map(String::from)
    );
    // Blobs are in the store under their digests.
    for l in &v1.layers {
        assert!(dir
            .path()
            .join("blobs/sha256")
            .join(l.digest.hex())
            .is_file());
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0,
        "tmp/ left clean"
    );

    // Same image again: nothing fetched.
    let again = p.pull(&image).await.unwrap();
    assert_eq!(again.report.layers_fetched, 0);
    assert_eq!(again.report.bytes_fetched, 0);

    // A second image differing in one layer: exactly that layer (plus manifest+config) fetched.
    let v2 = busybox_httpd_image("page v2")
        .push(reg.addr(), "demo/web", "v2")
        .unwrap();
    let pulled2 = p.pull(&v2.image_ref().parse().unwrap()).await.unwrap();
    assert_eq!(pulled2.report.layers_fetched, 1);
    assert_eq!(pulled2.report.layers_cached, 1);
    let layer_bytes: u64 = pulled2
        .report
        .layers
        .iter()
        .filter(|l| l.fetched)
        .map(|l| l.size)
        .sum();
    assert_eq!(layer_bytes, v2.layers[1].size);
    assert_eq!(
        pulled2.layer_dirs[0], pulled.layer_dirs[0],
        "busybox layer shared on disk"
    );

    // Loading from disk only gives the same image.
    let loaded = p.store().load(&image).unwrap().expect("complete on disk");
    assert_eq!(loaded.layer_dirs, pulled.layer_dirs);
    assert_eq!(loaded.manifest_digest, v1.digest);
}

#[tokio::test]
async fn index_picks_this_hosts_platform() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = busybox_httpd_image("native");
    let other_arch = if slipway_tests::image::host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let other = ImageBuilder::new()
        .layer_from_files(&[("www/index.html", b"foreign")])
        .platform("linux", other_arch)
        .build();
    let pushed = Index::new()
        .image(other)
        .image(host.clone())
        .push(reg.addr(), "demo/multi", "latest")
        .unwrap();
    let pulled = puller(&reg, dir.path())
        .pull(&pushed.image_ref().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, host.manifest_digest);
    assert_eq!(
        std::fs::read_to_string(pulled.layer_dirs[1].join("www/index.html")).unwrap(),
        "native"
    );
}

#[tokio::test]
async fn zstd_uncompressed_and_whiteouts() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/a", b"a", 0o644)
        .file("etc/b", b"b", 0o644)
        .dir("var/cache", 0o755)
        .file("var/cache/x", b"x", 0o644)
        .hardlink("etc/a-link", "etc/a");
    let top = TarBuilder::new()
        .whiteout("etc/a")
        .opaque("var/cache")
        .file("var/cache/y", b"y", 0o644);
    let image = ImageBuilder::new()
        .layer(Layer::from_tar(&base.finish(), Compression::Zstd))
        .layer(Layer::from_tar(&top.finish(), Compression::None))
        .build();
    let pushed = image.push(reg.addr(), "demo/wh", "v1").unwrap();
    let pulled = puller(&reg, dir.path())
        .pull(&pushed.image_ref().parse().unwrap())
        .await
        .unwrap();
    let (l0, l1) = (&pulled.layer_dirs[0], &pulled.layer_dirs[1]);
    assert_eq!(std::fs::read(l0.join("etc/a-link")).unwrap(), b"a");
    assert_eq!(
        l0.join("etc/a-link").metadata().unwrap().ino(),
        l0.join("etc/a").metadata().unwrap().ino()
    );
    let wh = l1.join("etc/a").symlink_metadata().unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0:0 char device"
    );
    let opaque = rustix::fs::lgetxattr(
        l1.join("var/cache"),
        "trusted.overlay.opaque",
        &mut [0u8; 8],
    )
    .unwrap();
    assert_eq!(opaque, 1);
    assert!(!l1.join("var/cache/.wh..wh..opq").exists());
    assert!(!l1.join("etc/.wh.a").exists());
}
