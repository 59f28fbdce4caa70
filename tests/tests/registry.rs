//! The test-support registry and image builder work against the real `docker-registry`.

use slipway_proto::Digest;
use slipway_tests::image::{busybox_httpd_image, get_blob, get_manifest, ImageBuilder, Index};
use slipway_tests::registry::Registry;

#[test]
fn push_then_read_manifest_back_by_digest() {
    let reg = Registry::start().unwrap();
    let image = busybox_httpd_image("hello from slipway");
    let pushed = image.push(reg.addr(), "demo/web", "v1").unwrap();
    assert_eq!(pushed.digest, image.manifest_digest);

    let (bytes, content_type) =
        get_manifest(reg.addr(), "demo/web", &pushed.digest.to_string()).unwrap();
    assert_eq!(
        Digest::of(&bytes),
        pushed.digest,
        "manifest bytes hash to the digest"
    );
    assert_eq!(content_type, slipway_tests::image::MEDIA_MANIFEST);
    assert_eq!(bytes, image.manifest);

    // The tag resolves to the same digest, and every blob reads back intact.
    let (by_tag, _) = get_manifest(reg.addr(), "demo/web", "v1").unwrap();
    assert_eq!(Digest::of(&by_tag), pushed.digest);
    for layer in &pushed.layers {
        let blob = get_blob(reg.addr(), "demo/web", &layer.digest).unwrap();
        assert_eq!(blob.len() as u64, layer.size);
        assert_eq!(Digest::of(&blob), layer.digest);
    }
    assert!(
        pushed
            .image_ref()
            .parse::<slipway_proto::ImageRef>()
            .is_ok(),
        "{} is a valid pinned reference",
        pushed.image_ref()
    );
}

#[test]
fn two_pages_share_the_busybox_layer_and_differ_in_one() {
    let reg = Registry::start().unwrap();
    let a = busybox_httpd_image("v1")
        .push(reg.addr(), "demo/web", "v1")
        .unwrap();
    let b = busybox_httpd_image("v2")
        .push(reg.addr(), "demo/web", "v2")
        .unwrap();
    assert_ne!(a.digest, b.digest);
    assert_eq!(a.layers.len(), 2);
    assert_eq!(a.layers[0], b.layers[0], "busybox layer shared");
    assert_ne!(a.layers[1], b.layers[1], "page layer differs");
}

#[test]
fn index_pushes_and_reads_back() {
    let reg = Registry::start().unwrap();
    let amd = busybox_httpd_image("x").clone();
    let arm = ImageBuilder::new()
        .layer_from_files(&[("hello.txt", b"arm")])
        .platform("linux", "arm64")
        .build();
    let index = Index::new().image(amd).image(arm);
    let pushed = index.push(reg.addr(), "demo/multi", "latest").unwrap();
    let (bytes, ct) = get_manifest(reg.addr(), "demo/multi", &pushed.digest.to_string()).unwrap();
    assert_eq!(Digest::of(&bytes), pushed.digest);
    assert_eq!(ct, slipway_tests::image::MEDIA_INDEX);
}
