//! The hostile-layer corpus, pulled from a real registry: each layer is refused with a
//! message naming the layer digest and the reason, and nothing is written outside the store
//! (nor anything left in it but the verified manifest and config).

use slipway_image::{Limits, Puller, RegistryConfig, Store};
use slipway_tests::image::{Compression, ImageBuilder, Layer, TarBuilder};
use slipway_tests::registry::Registry;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every path under `root`, relative.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Pushes an image with `layer` on top of a benign base, pulls it, and checks the refusal.
async fn refused(layer: Layer, reason: &str, limits: Limits, outside: &[&Path]) {
    let reg = Registry::start().unwrap();
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("sentinel"), b"untouched").unwrap();
    let store_dir = outer.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let base = Layer::from_tar(
        &TarBuilder::new()
            .dir("etc", 0o755)
            .file("etc/hostname", b"h", 0o644)
            .finish(),
        Compression::Gzip,
    );
    let image = ImageBuilder::new()
        .layer(base.clone())
        .layer(layer.clone())
        .build();
    let pushed = image.push(reg.addr(), "hostile/img", "v1").unwrap();
    let before = tree(outer.path());

    let cfg = RegistryConfig {
        insecure: vec![reg.addr().into()],
        ..Default::default()
    };
    let puller = Puller::new(store, cfg).with_limits(limits);
    let err = puller
        .pull(&pushed.image_ref().parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&layer.digest.to_string()),
        "error names the layer digest: {err}"
    );
    assert!(err.contains(reason), "error `{err}` lacks `{reason}`");

    // The store holds only the verified manifest and config (and the benign base layer,
    // which may have finished first); tmp/ is empty; nothing appeared around the store.
    let after = tree(outer.path());
    let new: Vec<_> = after.difference(&before).collect();
    let allowed = |p: &PathBuf| {
        let s = p.to_string_lossy();
        s == "store/lock"
            || s == format!("store/blobs/sha256/{}", image.manifest_digest.hex())
            || s == format!("store/blobs/sha256/{}", image.config_digest.hex())
            || s.starts_with(&format!("store/blobs/sha256/{}", base.digest.hex()))
            || s.starts_with(&format!("store/layers/{}", base.diff_id.hex()))
    };
    let bad: Vec<_> = new.iter().filter(|p| !allowed(p)).collect();
    assert!(
        bad.is_empty(),
        "unexpected paths after a refused pull: {bad:?}"
    );
    assert_eq!(
        std::fs::read(outer.path().join("sentinel")).unwrap(),
        b"untouched"
    );
    assert!(!store_dir.join("layers").join(layer.diff_id.hex()).exists());
    assert!(
        !store_dir
            .join("blobs/sha256")
            .join(layer.digest.hex())
            .exists(),
        "refused blob not kept"
    );
    for p in outside {
        assert!(!p.exists(), "{} was written outside the store", p.display());
    }
    // (prometheus-client hands out read guards: take one count at a time.)
    let count = |reason| {
        let family = &puller.metrics().verification_failures;
        let n = family
            .get_or_create(&slipway_image::metrics::ReasonLabel { reason })
            .get();
        n
    };
    let hostile = count("hostile_layer");
    assert_eq!(
        hostile + count("digest_mismatch"),
        1,
        "one verification failure counted"
    );
}

fn gz(tar: TarBuilder) -> Layer {
    Layer::from_tar(&tar.finish(), Compression::Gzip)
}

/// A unique absolute path outside any store, to prove nothing lands there.
fn outside(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("slipway-escape-{tag}-{}", std::process::id()))
}

#[tokio::test]
async fn dotdot_entry() {
    let layer = gz(TarBuilder::new().file("../../../../escaped", b"x", 0o644));
    refused(
        layer,
        "entry `../../../../escaped` escapes the root",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn absolute_path() {
    let target = outside("abs");
    let layer = gz(TarBuilder::new().file(target.to_str().unwrap(), b"x", 0o644));
    refused(layer, "is an absolute path", Limits::default(), &[&target]).await;
}

#[tokio::test]
async fn symlink_parent_escape() {
    let target = outside("symdir");
    std::fs::create_dir_all(&target).unwrap();
    let layer = gz(TarBuilder::new()
        .symlink("evil", target.to_str().unwrap())
        .file("evil/planted", b"x", 0o644));
    refused(
        layer,
        "entry `evil/planted` writes through symlink `evil`",
        Limits::default(),
        &[&target.join("planted")],
    )
    .await;
    std::fs::remove_dir_all(&target).unwrap();
}

#[tokio::test]
async fn hardlink_escape() {
    let layer = gz(TarBuilder::new().hardlink("passwd", "../../../../../etc/passwd"));
    refused(
        layer,
        "hardlink `passwd` -> `../../../../../etc/passwd`: target escapes the root",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn hardlink_through_symlink() {
    let layer = gz(TarBuilder::new()
        .symlink("etcdir", "/etc")
        .hardlink("pw", "etcdir/passwd"));
    refused(
        layer,
        "hardlink `pw` resolves through `etcdir`",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn opaque_whiteout_under_symlinked_dir() {
    let target = outside("opq");
    std::fs::create_dir_all(&target).unwrap();
    let layer = gz(TarBuilder::new()
        .symlink("d", target.to_str().unwrap())
        .opaque("d"));
    refused(
        layer,
        "entry `d/.wh..wh..opq` writes through symlink `d`",
        Limits::default(),
        &[],
    )
    .await;
    let xattr = rustix::fs::lgetxattr(&target, "trusted.overlay.opaque", &mut [0u8; 8]);
    assert!(xattr.is_err(), "opaque xattr must not be set outside");
    std::fs::remove_dir_all(&target).unwrap();
}

#[tokio::test]
async fn whiteout_escape() {
    let layer = gz(TarBuilder::new().file("a/.wh...", b"", 0o644));
    refused(
        layer,
        "whiteout `a/.wh...` names no valid entry",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn duplicate_entry_replaces_dir_with_symlink() {
    let layer = gz(TarBuilder::new()
        .dir("lib", 0o755)
        .file("lib/x", b"x", 0o644)
        .symlink("lib", "/etc"));
    refused(
        layer,
        "entry `lib` would replace a directory with a symlink",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn trusted_xattr() {
    let layer =
        gz(TarBuilder::new().file_with_xattrs("f", b"x", &[("trusted.overlay.opaque", b"y")]));
    refused(
        layer,
        "carries xattr `trusted.overlay.opaque`",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn security_xattr() {
    let layer = gz(TarBuilder::new().file_with_xattrs(
        "f",
        b"x",
        &[("security.selinux", b"system_u:object_r:shadow_t:s0")],
    ));
    refused(
        layer,
        "carries xattr `security.selinux`",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn malformed_file_capability() {
    let layer =
        gz(TarBuilder::new().file_with_xattrs("f", b"x", &[("security.capability", b"\x01")]));
    refused(
        layer,
        "entry `f` carries a malformed security.capability (1 bytes)",
        Limits::default(),
        &[],
    )
    .await;
}

#[tokio::test]
async fn gzip_bomb() {
    // 64 MiB of zeros compresses to ~64 KiB; the cap here is 8 MiB.
    let zeros = vec![0u8; 64 << 20];
    let layer = gz(TarBuilder::new().file("bomb", &zeros, 0o644));
    assert!(layer.size() < 1 << 20);
    let limits = Limits {
        max_unpacked_bytes: 8 << 20,
        ..Limits::default()
    };
    refused(
        layer,
        "expands beyond 8388608 uncompressed bytes",
        limits,
        &[],
    )
    .await;
}

#[tokio::test]
async fn too_many_entries() {
    let mut t = TarBuilder::new();
    for i in 0..50 {
        t = t.file(&format!("f{i}"), b"", 0o644);
    }
    let limits = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    refused(gz(t), "has more than 20 entries", limits, &[]).await;
}

#[tokio::test]
async fn diff_id_mismatch() {
    let tar = TarBuilder::new().file("f", b"x", 0o644).finish();
    let honest = Layer::from_tar(&tar, Compression::Gzip);
    let lying = Layer::raw(
        honest.bytes.clone(),
        &honest.media_type,
        slipway_proto::Digest::of(b"something else"),
    );
    refused(lying, "but the config's diff_id is", Limits::default(), &[]).await;
}

#[tokio::test]
async fn garbage_instead_of_gzip() {
    let layer = Layer::raw(
        b"this is not gzip at all".to_vec(),
        "application/vnd.oci.image.layer.v1.tar+gzip",
        slipway_proto::Digest::of(b""),
    );
    refused(layer, "reading the layer stream", Limits::default(), &[]).await;
}
