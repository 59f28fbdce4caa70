use super::*;
use std::os::unix::fs::MetadataExt;

fn spec(extra: &str) -> slipway_proto::AppSpec {
    slipway_proto::AppSpec::from_toml(&format!(
        "name = \"db\"\nimage = \"r.example/db\"\nlisten = 5432\ncontainer_port = 5432\n{extra}"
    ))
    .unwrap()
}

/// A fake root: /data owned by 70:71 holding a file, and /evil -> / (a symlink out).
fn rootfs() -> tempfile::TempDir {
    let r = tempfile::tempdir().unwrap();
    let data = r.path().join("var/lib/db");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
    std::os::unix::fs::symlink("PG_VERSION", data.join("link")).unwrap();
    std::os::unix::fs::chown(&data, Some(70), Some(71)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("/etc", r.path().join("evil")).unwrap();
    r
}

#[test]
fn named_volumes_are_seeded_once_with_the_images_owner_and_kept() {
    let root = rootfs();
    let state = tempfile::tempdir().unwrap();
    let vols = state.path().join("volumes");
    let s = spec("[[volumes]]\nname = \"pgdata\"\ncontainer = \"/var/lib/db\"\n");
    let (binds, named) = prepare("db", &s, &[], root.path(), state.path(), &vols).unwrap();
    assert_eq!(named, ["pgdata"]);
    let data = &binds[0].source;
    assert_eq!(
        std::fs::read_to_string(data.join("PG_VERSION")).unwrap(),
        "15\n"
    );
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("PG_VERSION")
    );
    let m = std::fs::metadata(data).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (70, 71, 0o700));
    // Rows written by the app survive the next container: no second seed.
    std::fs::write(data.join("rows"), "1\n").unwrap();
    std::fs::remove_file(root.path().join("var/lib/db/PG_VERSION")).unwrap();
    let (binds, _) = prepare("db", &s, &[], root.path(), state.path(), &vols).unwrap();
    assert_eq!(
        std::fs::read_to_string(binds[0].source.join("rows")).unwrap(),
        "1\n"
    );
    let ls = list(&vols, state.path()).unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(
        (ls[0].name.as_str(), ls[0].created_by.as_str()),
        ("pgdata", "db")
    );
    remove(&vols, state.path(), "pgdata").unwrap();
    assert!(list(&vols, state.path()).unwrap().is_empty());
    let e = remove(&vols, state.path(), "pgdata")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pgdata") && e.contains("no such volume"), "{e}");
    let e = remove(&vols, state.path(), "PG_data")
        .unwrap_err()
        .to_string();
    assert!(e.contains("PG_data") && e.contains("a-z"), "{e}");
}

#[test]
fn image_volumes_are_fresh_per_container_unless_the_spec_covers_them() {
    let root = rootfs();
    let c = tempfile::tempdir().unwrap();
    let vols = c.path().join("named");
    let img = ["/var/lib/db".to_string(), "/cache".to_string()];
    let (binds, named) = prepare("db", &spec(""), &img, root.path(), c.path(), &vols).unwrap();
    assert!(named.is_empty());
    assert_eq!(binds.len(), 2);
    assert!(binds[0].source.starts_with(c.path()));
    assert!(binds.iter().any(|b| b.source.join("PG_VERSION").is_file()));
    // `/cache` is not in the image: an empty dir.
    let cache = binds
        .iter()
        .find(|b| b.destination == Path::new("/cache"))
        .unwrap();
    assert_eq!(std::fs::read_dir(&cache.source).unwrap().count(), 0);
    let covered = spec("[[volumes]]\nname = \"pgdata\"\ncontainer = \"/var/lib\"\n");
    let c2 = tempfile::tempdir().unwrap();
    let (binds, _) = prepare("db", &covered, &img, root.path(), c2.path(), &vols).unwrap();
    assert_eq!(binds.len(), 2, "{binds:?}");
    assert!(binds.iter().any(|b| b.destination == Path::new("/var/lib")));
    assert!(!binds
        .iter()
        .any(|b| b.destination == Path::new("/var/lib/db")));
}

#[test]
fn a_volume_path_through_a_symlink_stays_inside_the_root() {
    let root = rootfs();
    let c = tempfile::tempdir().unwrap();
    let img = ["/evil".to_string()];
    let (binds, _) = prepare("db", &spec(""), &img, root.path(), c.path(), c.path()).unwrap();
    // `/evil -> /etc` resolves to the image's /etc (absent here), never the host's.
    assert_eq!(std::fs::read_dir(&binds[0].source).unwrap().count(), 0);
    let e = prepare(
        "db",
        &spec(""),
        &["../x".to_string()],
        root.path(),
        c.path(),
        c.path(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("app db") && e.contains("../x"), "{e}");
}
