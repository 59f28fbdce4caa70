//! Image compatibility, pulled from a real `docker-registry`: what real-world layers carry
//! (device nodes in base rootfs tarballs, file capabilities, a file and its whiteout in one
//! layer, PAX nanosecond mtimes) unpacks as a container runtime expects.

use slipway_image::{Puller, RegistryConfig, Store};
use slipway_proto::ImageRef;
use slipway_tests::image::{Compression, ImageBuilder, Layer, TarBuilder};
use slipway_tests::registry::Registry;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

/// `vfs_cap_data` revision 2 with the effective bit: cap_net_raw (13) permitted.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn gz(tar: TarBuilder) -> Layer {
    Layer::from_tar(&tar.finish(), Compression::Gzip)
}

#[tokio::test]
async fn real_world_layers_unpack() {
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = gz(TarBuilder::new()
        .dir("dev", 0o755)
        .char_device("dev/console", 5, 1)
        .char_device("dev/null", 1, 3)
        .dir("bin", 0o755)
        .file_with_xattrs(
            "bin/ping",
            b"ping",
            &[("security.capability", &CAP_NET_RAW)],
        )
        .file_with_pax("stamp", b"t", 0o644, &[("mtime", b"1700000000.123456789")])
        .dir("d", 0o755)
        .file("d/lower", b"lower", 0o644)
        .file("gone", b"lower", 0o644));
    // A file and its whiteout in one layer: the file stays (the whiteout is for lower
    // layers), in either order; a directory and its whiteout: the directory, opaque.
    let top = gz(TarBuilder::new()
        .file("a", b"kept", 0o644)
        .whiteout("a")
        .whiteout("b")
        .file("b", b"kept too", 0o644)
        .whiteout("d")
        .dir("d", 0o755)
        .file("d/upper", b"upper", 0o644)
        .whiteout("gone"));
    let image = ImageBuilder::new()
        .layer(base.clone())
        .layer(top.clone())
        .build();
    let pushed = image.push(reg.addr(), "compat/img", "v1").unwrap();
    let cfg = RegistryConfig {
        insecure: vec![reg.addr().into()],
        ..Default::default()
    };
    let store = dir.path().join("store");
    let puller = Puller::new(Store::open(&store).unwrap(), cfg);
    let image_ref: ImageRef = pushed.image_ref().parse().unwrap();
    let pulled = puller.pull(&image_ref).await.unwrap();

    // Device nodes: skipped, counted, never created.
    assert_eq!(pulled.report.devices_skipped, 2);
    let base_report = pulled
        .report
        .layers
        .iter()
        .find(|l| l.digest == base.digest)
        .unwrap();
    assert_eq!(base_report.devices_skipped, 2);
    let (lower, upper) = (&pulled.layer_dirs[0], &pulled.layer_dirs[1]);
    assert!(lower.join("dev").is_dir());
    assert!(
        !lower.join("dev/console").exists(),
        "no device node created"
    );
    assert!(!lower.join("dev/null").exists(), "no device node created");

    // File capabilities applied.
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(lower.join("bin/ping"), "security.capability", &mut buf)
        .expect("security.capability set on bin/ping");
    assert_eq!(&buf[..n], &CAP_NET_RAW);

    // PAX mtime to the nanosecond.
    let m = lower.join("stamp").metadata().unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));

    // File + whiteout in one layer: the file wins; a dir + whiteout: opaque dir.
    assert_eq!(std::fs::read(upper.join("a")).unwrap(), b"kept");
    assert_eq!(std::fs::read(upper.join("b")).unwrap(), b"kept too");
    assert!(upper.join("d/upper").is_file());
    let n = rustix::fs::getxattr(upper.join("d"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    let gone = upper.join("gone").symlink_metadata().unwrap();
    assert!(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "whiteout of a lower file"
    );

    // The store is root's only: no local user reaches the layers' setuid binaries.
    for sub in ["", "layers", "blobs", "tmp"] {
        let mode = store.join(sub).metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "store/{sub} is {mode:o}");
    }

    // Pulled again: all cached, no devices counted.
    let again = puller.pull(&image_ref).await.unwrap();
    assert_eq!(again.report.layers_cached, 2);
    assert_eq!(again.report.devices_skipped, 0);
}

#[tokio::test]
async fn old_store_dirs_become_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("layers")).unwrap();
    std::fs::set_permissions(store.join("layers"), std::fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&store).unwrap();
    let mode = store
        .join("layers")
        .metadata()
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}
