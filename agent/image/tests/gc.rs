//! GC and disk-only loading against a real registry.

use slipway_image::{Puller, RegistryConfig, Store};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;

#[tokio::test]
async fn gc_keeps_what_is_referenced_and_removes_the_rest() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        insecure: vec![reg.addr().into()],
        ..Default::default()
    };
    let puller = Puller::new(Store::open(dir.path()).unwrap(), cfg);
    let v1 = busybox_httpd_image("one")
        .push(reg.addr(), "demo/web", "v1")
        .unwrap();
    let v2 = busybox_httpd_image("two")
        .push(reg.addr(), "demo/web", "v2")
        .unwrap();
    let p1 = puller.pull(&v1.image_ref().parse().unwrap()).await.unwrap();
    let p2 = puller.pull(&v2.image_ref().parse().unwrap()).await.unwrap();
    std::fs::write(
        dir.path().join("blobs/sha256").join("0".repeat(64)),
        b"stray",
    )
    .unwrap();

    let store = puller.store();
    let report = store.gc(std::slice::from_ref(&v2.digest)).unwrap();
    // v1's manifest, config and page layer go (blob + dir); the shared busybox layer stays.
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert_eq!(report.layers_removed, 1, "{report:?}");
    assert!(!p1.layer_dirs[1].exists());
    assert!(p1.layer_dirs[0].exists() && p2.layer_dirs.iter().all(|d| d.exists()));
    assert!(store
        .load(&v1.image_ref().parse().unwrap())
        .unwrap()
        .is_none());
    let loaded = store
        .load(&v2.image_ref().parse().unwrap())
        .unwrap()
        .expect("v2 kept");
    assert_eq!(loaded.layer_dirs, p2.layer_dirs);

    // GC with nothing to keep empties the store.
    let report = store.gc(&[]).unwrap();
    assert_eq!(report.layers_removed, 2);
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn load_rechecks_digests_on_disk() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        insecure: vec![reg.addr().into()],
        ..Default::default()
    };
    let puller = Puller::new(Store::open(dir.path()).unwrap(), cfg);
    let v1 = busybox_httpd_image("one")
        .push(reg.addr(), "demo/web", "v1")
        .unwrap();
    let image = v1.image_ref().parse().unwrap();
    puller.pull(&image).await.unwrap();
    let config = dir
        .path()
        .join("blobs/sha256")
        .join(v1.config.as_ref().unwrap().digest.hex());
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&config, &bytes).unwrap();
    let err = puller.store().load(&image).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "config {} on disk hashes to",
            v1.config.unwrap().digest
        )),
        "{err}"
    );
}
