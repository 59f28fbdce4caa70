//! What a container gets, on real runc: a writable layer, volumes, name files, Docker's
//! isolation defaults, STOPSIGNAL, 128 layers. Needs root, runc, CNI plugins, busybox-static.

mod common;

use common::*;
use slipway_runtime::{ContainerSpec, Runtime};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECS_5: Duration = Duration::from_secs(5);

fn sh(s: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), s.into()]
}

async fn run(rt: &Runtime, id: &str, s: &str) -> (i32, String) {
    let out = rt.exec(id, &sh(s), SECS_5).await.unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.code, text)
}

#[tokio::test]
async fn a_container_gets_a_writable_layer_name_files_and_dockers_isolation() {
    let mut fx = Fixture::new();
    fx.cfg.dns.servers = vec!["192.0.2.53".parse().unwrap()];
    fx.cfg.dns.search = vec!["corp.test".into()];
    let rt = fx.runtime();
    let release = fx.release("web", 1, "[dns]\nsearch = [\"app.test\"]\n");
    let id = release.container_id().unwrap();
    let layers = fx.layers("hi");
    let image = image_config(|c| c);
    let info = rt
        .start(ContainerSpec {
            id: id.clone(),
            release: &release,
            image_config: &image,
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
    assert_eq!(get(info.address, SECS_5).unwrap(), "hi");

    // The writable layer: writes land in the container's upper dir, not in the image.
    assert_eq!(
        run(&rt, &id, "echo new > /www/f && cat /www/f").await,
        (0, "new\n".into())
    );
    let dir = fx.cfg.state_dir.join(&id);
    assert!(dir.join("upper/www/f").is_file());
    assert!(!layers[1].join("www/f").exists());
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);

    // Name files: agent config servers, spec search, never-hang options; hosts; hostname.
    let (_, resolv) = run(&rt, &id, "cat /etc/resolv.conf").await;
    assert!(resolv.contains("nameserver 192.0.2.53\n"), "{resolv}");
    assert!(resolv.contains("search app.test\n"), "{resolv}");
    assert!(resolv.contains("options timeout:1 attempts:2"), "{resolv}");
    let (_, hosts) = run(&rt, &id, "cat /etc/hosts").await;
    assert!(
        hosts.contains(&format!("{}\t{id}", info.address)),
        "{hosts}"
    );
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert_eq!(run(&rt, &id, "hostname").await.1, format!("{id}\n"));
    assert_eq!(
        run(&rt, &id, "cat /etc/hostname").await.1,
        format!("{id}\n")
    );

    // Isolation: no new user namespace, no mount (seccomp and no CAP_SYS_ADMIN), no raw
    // sockets but ICMP echo sockets for every group (ping_group_range; busybox ping only
    // tries raw sockets, the Debian image test pings for real), masked /proc files.
    let (code, out) = run(&rt, &id, "unshare -U true").await;
    assert_ne!(code, 0, "unshare -U allowed: {out}");
    let (code, out) = run(&rt, &id, "mkdir -p /mnt && mount -t tmpfs t /mnt").await;
    assert_ne!(code, 0, "mount allowed: {out}");
    let (code, out) = run(&rt, &id, "ping -c 1 -W 2 127.0.0.1").await;
    assert!(
        code != 0 && out.contains("permission denied"),
        "raw ping allowed: {out}"
    );
    let (_, range) = run(&rt, &id, "cat /proc/sys/net/ipv4/ping_group_range").await;
    assert_eq!(
        range.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"]
    );
    assert_eq!(run(&rt, &id, "cat /proc/interrupts /proc/keys").await.1, "");
    let (_, mounts) = run(&rt, &id, "grep ' /proc proc' /proc/mounts").await;
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(mounts.contains(o), "{mounts}");
    }
    let (_, status) = run(&rt, &id, "grep -E '^(CapBnd|Seccomp):' /proc/self/status").await;
    assert!(
        status.contains("Seccomp:\t2"),
        "no seccomp filter: {status}"
    );
    // CapBnd of Docker's set without NET_RAW (bit 13): 0x a80425fb -> a80405fb.
    assert!(status.contains("00000000a80405fb"), "{status}");

    rt.discard(&id, Duration::from_secs(1)).await.unwrap();
    fx.assert_clean(&id);
    assert!(
        !dir.join("upper").exists(),
        "the writable layer outlived its container"
    );
}

#[tokio::test]
async fn named_volumes_outlive_containers_and_image_volumes_do_not() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let mut layers = fx.layers("vol");
    // The image owns /data (33:33) with a seed file, and declares VOLUME /data and /cache.
    let seed = fx.dir.path().join("seed-layer");
    std::fs::create_dir_all(seed.join("data")).unwrap();
    std::fs::write(seed.join("data/seed"), "from the image\n").unwrap();
    std::os::unix::fs::chown(seed.join("data"), Some(33), Some(33)).unwrap();
    layers.push(seed);
    let image = image_config(|c| c.volumes(vec!["/data".to_string(), "/cache".to_string()]));
    let spec = "[[volumes]]\nname = \"keep\"\ncontainer = \"/data\"\n";
    let mut ids = Vec::new();
    for seq in 1..=2 {
        let release = fx.release("db", seq, spec);
        let id = release.container_id().unwrap();
        rt.start(ContainerSpec {
            id: id.clone(),
            release: &release,
            image_config: &image,
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
        let (_, out) = run(&rt, &id, "cat /data/seed /data/rows /cache/x 2>/dev/null; stat -c %u:%g /data; echo row$0 >> /data/rows; echo c > /cache/x").await;
        ids.push((id, out));
        rt.discard(&ids.last().unwrap().0, Duration::ZERO)
            .await
            .unwrap();
    }
    assert_eq!(ids[0].1, "from the image\n33:33\n");
    // Second container: the named volume kept its rows; the image VOLUME /cache is fresh.
    assert_eq!(ids[1].1, "from the image\nrow/bin/sh\n33:33\n");
    let vols = fx.cfg.volumes_dir();
    let listed = slipway_runtime::volumes::list(&vols, &fx.cfg.state_dir).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "keep");
    assert!(listed[0].path.join("rows").is_file());
    assert!(!fx.cfg.state_dir.join(&ids[0].0).join("volumes").exists());
    slipway_runtime::volumes::remove(&vols, &fx.cfg.state_dir, "keep").unwrap();
    assert!(!vols.join("keep").exists());
}

#[tokio::test]
async fn a_bad_seccomp_file_fails_the_start_and_names_app_and_file() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let profile = fx.dir.path().join("broken.json");
    std::fs::write(&profile, "{ not json").unwrap();
    let release = fx.release("web", 1, &format!("seccomp = \"{}\"\n", profile.display()));
    let id = release.container_id().unwrap();
    let layers = fx.layers("x");
    let e = rt
        .start(ContainerSpec {
            id: id.clone(),
            release: &release,
            image_config: &image_config(|c| c),
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("app web") && e.contains(&profile.display().to_string()),
        "{e}"
    );
    fx.assert_clean(&id);
}

#[tokio::test]
async fn discard_sends_the_images_stop_signal() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let data = fx.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let release = fx.release(
        "web",
        1,
        &format!(
            "[[volumes]]\nhost = \"{}\"\ncontainer = \"/data\"\n",
            data.display()
        ),
    );
    let id = release.container_id().unwrap();
    let layers = fx.layers("x");
    let image = image_config(|c| {
        c.stop_signal("SIGUSR1").cmd(sh(
            "trap 'echo got USR1 > /data/signal; exit 0' USR1; echo up > /data/up; while true; do sleep 0.1; done",
        ))
    });
    rt.start(ContainerSpec {
        id: id.clone(),
        release: &release,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    let t = Instant::now();
    while !data.join("up").exists() && t.elapsed() < SECS_5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    rt.discard(&id, Duration::from_secs(10)).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited out the grace: {:?}",
        t.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("signal")).unwrap(),
        "got USR1\n"
    );
    fx.assert_clean(&id);
}

#[tokio::test]
async fn an_image_of_128_layers_starts() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let mut layers = fx.layers("many");
    for i in 0..126 {
        // Long paths, like the store's `layers/sha256/<64 hex>`, to overflow a page if named.
        let d = fx.dir.path().join(format!("layers/sha256/{:064x}", i + 1));
        std::fs::create_dir_all(d.join("layers")).unwrap();
        std::fs::write(d.join(format!("layers/{i}")), format!("{i}")).unwrap();
        layers.push(d);
    }
    assert_eq!(layers.len(), 128);
    let release = fx.release("web", 1, "");
    let id = release.container_id().unwrap();
    let info = rt
        .start(ContainerSpec {
            id: id.clone(),
            release: &release,
            image_config: &image_config(|c| c),
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
    assert_eq!(get(info.address, SECS_5).unwrap(), "many");
    let (_, n) = run(&rt, &id, "ls /layers | grep -c .").await;
    assert_eq!(n, "126\n");
    rt.discard(&id, Duration::ZERO).await.unwrap();
    fx.assert_clean(&id);
    let _: Vec<PathBuf> = layers;
}

/// A container writing nonstop, to stdout and stderr, far more than the cap: each stream's
/// files on disk (current, rotated copy, write-time indexes) stay near twice the cap, and
/// the newest output is still there.
#[tokio::test(flavor = "multi_thread")]
async fn a_container_writing_nonstop_keeps_its_logs_within_twice_the_cap() {
    let mut fx = Fixture::new();
    // Bursts of 64 lines, then 5 ms of sleep: up to ~2.5 MB/s per stream, some 12 MB in the
    // 5 s below, many times the cap. (A shell writing flat out, ~30 MB/s, outruns any
    // watcher on a loaded machine by more than the cap.) Allowed: twice the cap, plus what
    // it writes while the agent's watcher waits ~400 ms for a busy CPU.
    let cap: u64 = 1024 * 1024;
    fx.cfg.log_max_size = slipway_runtime::ByteSize(cap);
    let rt = fx.runtime();
    let release = fx.release("chatty", 1, "");
    let id = release.container_id().unwrap();
    let layers = fx.layers("x");
    let pad = "x".repeat(200);
    let image = image_config(|c| {
        c.cmd(sh(&format!(
            "i=0; while :; do j=0; while [ $j -lt 64 ]; do i=$((i+1)); j=$((j+1)); \
             echo \"out $i {pad}\"; echo \"err $i {pad}\" >&2; done; usleep 5000; done"
        )))
    });
    rt.start(ContainerSpec {
        id: id.clone(),
        release: &release,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    let dir = fx.cfg.state_dir.join(&id);
    let usage = |name: &str| -> u64 {
        [
            name.to_string(),
            format!("{name}.1"),
            format!("{name}.times"),
            format!("{name}.1.times"),
        ]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum()
    };
    let (mut worst, mut rotations) = (0u64, 0u32);
    let t = Instant::now();
    let mut last_rotated = None;
    while t.elapsed() < Duration::from_secs(5) {
        for name in ["stdout.log", "stderr.log"] {
            let u = usage(name);
            if u > cap * 2 && std::env::var_os("LOGCAP_DEBUG").is_some() {
                eprintln!("{:?} {name} {u}", t.elapsed());
            }
            worst = worst.max(u);
        }
        let m = std::fs::metadata(dir.join("stdout.log.1"))
            .and_then(|m| m.modified())
            .ok();
        if m.is_some() && m != last_rotated {
            rotations += 1;
            last_rotated = m;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let written = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    rt.discard(&id, Duration::from_secs(2)).await.unwrap();
    assert!(
        rotations >= 3,
        "the container wrote too little to test: {rotations} rotations"
    );
    assert!(
        worst <= cap * 3,
        "a stream took {worst} bytes on disk with a cap of {cap}"
    );
    assert!(
        written.contains("out "),
        "{}",
        &written[..written.len().min(200)]
    );
    fx.assert_clean(&id);
}
