use super::*;
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

struct Etc(&'static str, &'static str);
impl EtcFiles for Etc {
    fn read(&self, name: &str) -> Option<String> {
        match name {
            "passwd" => Some(self.0.into()),
            "group" => Some(self.1.into()),
            _ => None,
        }
    }
}
const ETC: Etc = Etc(
    "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\nhuge:x:4294967295:1::/:/\n",
    "root:x:0:\nweb:x:99:\nssl-cert:x:101:www,other\nwww-data:x:34:www\nlog:x:4:www\n",
);

fn app() -> AppSpec {
    AppSpec::from_toml(
        "name = \"web\"\nimage = \"r.example/web\"\nlisten = 8080\ncontainer_port = 80\n[resources]\nmemory_mb = 64\ncpus = 0.5\n[env]\nMODE = \"prod\"\n",
    )
    .unwrap()
}

fn image(f: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .config(
            f(ConfigBuilder::default()
                .cmd(vec!["/bin/busybox".into(), "httpd".into(), "-f".into()])
                .env(vec!["MODE=dev".into(), "LANG=C".into()]))
            .build()
            .unwrap(),
        )
        .build()
        .unwrap()
}

fn build_with(spec: &AppSpec, img: &ImageConfiguration) -> Result<Spec, BundleError> {
    build(&BundleInput {
        id: "web-1-0123456789ab",
        image: "r.example/web@sha256:01",
        spec,
        config: img,
        etc: &ETC,
        netns: Path::new("/run/netns/slipway-web-1-0123456789ab"),
        cgroup: "web-1-0123456789ab",
        hostname: "web-1-0123456789ab",
        binds: &[],
        seccomp: Some(&crate::seccomp::Profile::docker_default()),
        secret_env: &[],
        root: Path::new("rootfs"),
    })
}

#[test]
fn config_has_limits_netns_readonly_root_and_safe_defaults() {
    let s = build_with(&app(), &image(|c| c)).unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap()[..2], ["/bin/busybox", "httpd"]);
    let env = p.env().as_ref().unwrap();
    assert!(env.contains(&"MODE=prod".to_string()) && env.contains(&"LANG=C".to_string()));
    assert!(!env.contains(&"MODE=dev".to_string()));
    assert!(env.iter().any(|e| e.starts_with("PATH=")));
    assert_eq!(p.no_new_privileges(), Some(true));
    let caps = p
        .capabilities()
        .as_ref()
        .unwrap()
        .bounding()
        .as_ref()
        .unwrap();
    assert!(!caps.contains(&Capability::SysAdmin) && caps.contains(&Capability::NetBindService));
    let l = s.linux().as_ref().unwrap();
    let net = l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .unwrap();
    assert_eq!(
        net.path().as_deref(),
        Some(Path::new("/run/netns/slipway-web-1-0123456789ab"))
    );
    let r = l.resources().as_ref().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
    assert!(l
        .masked_paths()
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m == "/proc/kcore"));
}

#[test]
fn spec_command_and_entrypoint_override_the_image() {
    let mut spec = app();
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), "true".into()]);
    let s = build_with(&spec, &image(|c| c.entrypoint(vec!["/init".to_string()]))).unwrap();
    assert_eq!(
        s.process().as_ref().unwrap().args().as_ref().unwrap(),
        &["/init", "/bin/sh", "-c", "true"]
    );
    let mut spec = app();
    spec.entrypoint = Some(vec!["/other".into()]);
    let s = build_with(&spec, &image(|c| c)).unwrap();
    assert_eq!(
        s.process().as_ref().unwrap().args().as_ref().unwrap(),
        &["/other"]
    );
    let e = build_with(&app(), &image(|c| c.cmd(Vec::<String>::new()))).unwrap_err();
    assert!(e.to_string().contains("nothing to run"), "{e}");
}

#[test]
fn hostile_working_dirs_are_refused() {
    for (dir, why) in [
        ("/proc/self/fd/7", "/proc"),
        ("/sys/kernel", "/proc, /sys"),
        ("relative/dir", "absolute"),
        ("/www/../proc/self/fd/7", "`..`"),
    ] {
        let e = build_with(&app(), &image(|c| c.working_dir(dir)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(dir) && e.contains(why) && e.contains("sha256:01"),
            "{e}"
        );
    }
    let s = build_with(&app(), &image(|c| c.working_dir("/www"))).unwrap();
    assert_eq!(s.process().as_ref().unwrap().cwd(), Path::new("/www"));
}

#[test]
fn users_resolve_through_the_images_etc_and_out_of_range_ids_are_refused() {
    assert_eq!(user("i", "", &ETC).unwrap(), (0, 0, vec![]));
    // Supplementary groups from /etc/group (file order, the primary group left out).
    assert_eq!(user("i", "www", &ETC).unwrap(), (33, 34, vec![101, 4]));
    assert_eq!(user("i", "33", &ETC).unwrap(), (33, 34, vec![101, 4]));
    assert_eq!(user("i", "1000:1000", &ETC).unwrap(), (1000, 1000, vec![]));
    assert_eq!(
        user("i", "www:web", &ETC).unwrap(),
        (33, 99, vec![101, 34, 4])
    );
    for bad in [
        "4294967295",
        "99999999999",
        "-1",
        "1000:4294967296",
        "huge",
        "nobody",
        "www:nogroup",
    ] {
        let e = user("img@sha256:01", bad, &ETC).unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains("img@sha256:01"), "{e}");
    }
}

#[test]
fn rootfs_etc_does_not_follow_symlinks_out_of_the_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("passwd"),
        root.path().join("etc/passwd"),
    )
    .unwrap();
    std::fs::write(root.path().join("etc/group"), "web:x:99:\n").unwrap();
    let etc = RootfsEtc(root.path());
    assert_eq!(etc.read("passwd"), None);
    assert_eq!(etc.read("group").as_deref(), Some("web:x:99:\n"));
}

#[test]
fn isolation_is_at_dockers_defaults_or_better() {
    let s = build_with(&app(), &image(|c| c)).unwrap();
    let p = s.process().as_ref().unwrap();
    let caps = p.capabilities().as_ref().unwrap();
    for set in [caps.bounding(), caps.effective(), caps.permitted()] {
        assert!(!set.as_ref().unwrap().contains(&Capability::NetRaw));
    }
    let l = s.linux().as_ref().unwrap();
    assert_eq!(
        l.sysctl().as_ref().unwrap()["net.ipv4.ping_group_range"],
        "0 2147483647"
    );
    let masked = l.masked_paths().as_ref().unwrap();
    for m in [
        "/proc/interrupts",
        "/sys/devices/virtual/powercap",
        "/proc/keys",
    ] {
        assert!(masked.iter().any(|x| x == m), "{m} not masked");
    }
    assert!(l
        .readonly_paths()
        .as_ref()
        .unwrap()
        .iter()
        .any(|x| x == "/proc/sysrq-trigger"));
    let mem = l.resources().as_ref().unwrap().memory().as_ref().unwrap();
    assert_eq!(mem.swap(), mem.limit());
    let proc_opts = s
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/proc"))
        .unwrap()
        .options()
        .clone()
        .unwrap();
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(proc_opts.iter().any(|x| x == o), "/proc lacks {o}");
    }
    let sc = l.seccomp().as_ref().expect("a seccomp profile");
    let names: Vec<String> = sc
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|c| c.names().clone())
        .collect();
    assert!(names.iter().any(|n| n == "read") && !names.iter().any(|n| n == "mount"));
    assert_eq!(s.hostname().as_deref(), Some("web-1-0123456789ab"));
}

#[test]
fn the_root_is_writable_unless_read_only() {
    let s = build_with(&app(), &image(|c| c)).unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(false));
    let tmp = |s: &Spec| {
        s.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == Path::new("/tmp"))
    };
    assert!(!tmp(&s));
    let mut ro = app();
    ro.read_only = true;
    let s = build_with(&ro, &image(|c| c)).unwrap();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    assert!(tmp(&s));
}

#[test]
fn cap_add_and_cap_drop_change_the_defaults() {
    let mut spec = app();
    assert!(!capabilities(&spec).contains(&Capability::NetRaw));
    spec.cap_add = vec!["net_raw".into(), "CAP_SYS_PTRACE".into()];
    spec.cap_drop = vec!["CHOWN".into()];
    let caps = capabilities(&spec);
    assert!(caps.contains(&Capability::NetRaw) && caps.contains(&Capability::SysPtrace));
    assert!(!caps.contains(&Capability::Chown));
    assert_eq!(caps.len(), CAPABILITIES.len() + 1);
    spec.cap_drop = vec!["all".into()];
    spec.cap_add = vec!["NET_BIND_SERVICE".into()];
    assert_eq!(capabilities(&spec), [Capability::NetBindService].into());
}
