//! The runtime on real runc, real CNI (bridge + host-local) and real network namespaces.
//! Needs root, runc, containernetworking-plugins, iproute2 and busybox-static.

mod common;

use common::*;
use slipway_runtime::{ContainerSpec, ContainerStatus, RuntimeError};
use std::time::{Duration, Instant};

const SECS_5: Duration = Duration::from_secs(5);

#[tokio::test]
async fn serves_its_page_with_limits_in_its_cgroup_and_leaves_nothing_after_discard() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let release = fx.release(
        "web",
        1,
        "read_only = true\n[resources]\nmemory_mb = 64\ncpus = 0.5\n",
    );
    let id = release.container_id().unwrap();
    let layers = fx.layers("hello from seq 1");
    let image = image_config(|c| c);
    let spec = || ContainerSpec {
        id: id.clone(),
        release: &release,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    };
    let info = rt.start(spec()).await.unwrap();
    assert_eq!((info.app.as_str(), info.seq), ("web", 1));
    assert_eq!(info.status, ContainerStatus::Running);
    assert!(
        info.address.to_string().starts_with("10.213."),
        "{}",
        info.address
    );
    assert_eq!(get(info.address, SECS_5).unwrap(), "hello from seq 1");

    assert_eq!(
        read_cgroup("memory", &id, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    // No swap beyond the limit: memory + swap is capped at the memory limit.
    assert_eq!(
        read_cgroup("memory", &id, "memory.memsw.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_period_us"), "100000");

    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].status, ContainerStatus::Running);
    assert!(fx.netns_exists(&id));
    assert!(!fx.veths().is_empty());

    // Read-only root, writable /tmp.
    let argv = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.into()];
    let out = rt
        .exec(&id, &argv("echo x > /www/f"), SECS_5)
        .await
        .unwrap();
    assert_ne!(out.code, 0, "root must be read-only");
    let out = rt
        .exec(&id, &argv("echo ok > /tmp/f && cat /tmp/f"), SECS_5)
        .await
        .unwrap();
    assert_eq!((out.code, out.stdout.as_slice()), (0, b"ok\n".as_slice()));

    // An exec that outlives its timeout is killed, inside the container too.
    let t = Instant::now();
    let e = rt
        .exec(&id, &argv("sleep 30"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::ExecTimeout { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
    let ps = rt
        .exec(&id, &argv("ps -o pid,stat,comm"), SECS_5)
        .await
        .unwrap();
    let procs = String::from_utf8_lossy(&ps.stdout).to_string();
    eprintln!("{procs}");
    let alive = procs
        .lines()
        .any(|l| l.contains("sleep") && !l.contains(" Z "));
    assert!(!alive, "exec'd process survived its timeout: {procs}");

    // The same release cannot run twice.
    let e = rt.start(spec()).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Exists { .. }), "{e}");

    rt.discard(&id, Duration::from_secs(1)).await.unwrap();
    fx.assert_clean(&id);
    assert!(rt.list().await.unwrap().is_empty());
    assert!(
        common::cgroup_dir("memory", &id).is_none(),
        "cgroup removed"
    );
    // Idempotent, and still refused after discard.
    rt.discard(&id, Duration::from_secs(1)).await.unwrap();
    let e = rt.start(spec()).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Exists { .. }), "{e}");
}

#[tokio::test]
async fn two_containers_of_one_app_run_side_by_side_on_the_same_port() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let image = image_config(|c| c);
    let (r1, r2) = (fx.release("web", 1, ""), fx.release("web", 2, ""));
    let (l1, l2) = (fx.layers("blue"), fx.layers("green"));
    let a = rt
        .start(ContainerSpec {
            id: r1.container_id().unwrap(),
            release: &r1,
            image_config: &image,
            layer_dirs: &l1,
            secrets: None,
        })
        .await
        .unwrap();
    let b = rt
        .start(ContainerSpec {
            id: r2.container_id().unwrap(),
            release: &r2,
            image_config: &image,
            layer_dirs: &l2,
            secrets: None,
        })
        .await
        .unwrap();
    assert_ne!(a.address, b.address);
    assert_eq!(get(a.address, SECS_5).unwrap(), "blue");
    assert_eq!(get(b.address, SECS_5).unwrap(), "green");
    let mut seqs: Vec<u64> = rt.list().await.unwrap().iter().map(|c| c.seq).collect();
    seqs.sort();
    assert_eq!(seqs, [1, 2]);
    // Discarding the old one leaves the new one serving.
    rt.discard(&a.id, Duration::ZERO).await.unwrap();
    assert!(try_get(a.address).is_err());
    assert_eq!(get(b.address, SECS_5).unwrap(), "green");
    rt.discard(&b.id, Duration::ZERO).await.unwrap();
    fx.assert_clean(&a.id);
    fx.assert_clean(&b.id);
}

#[tokio::test]
async fn hostile_image_configs_are_refused_with_a_clear_error_and_leave_nothing() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let layers = fx.layers("x");
    for (seq, image, expect) in [
        (
            1,
            image_config(|c| c.working_dir("/proc/self/fd/7")),
            "WorkingDir `/proc/self/fd/7`",
        ),
        (
            2,
            image_config(|c| c.user("4294967295")),
            "User `4294967295`",
        ),
        (3, image_config(|c| c.user("99999999999:0")), "out of range"),
        (
            4,
            image_config(|c| c.user("nobody")),
            "not in the image's /etc/passwd",
        ),
    ] {
        let r = fx.release("evil", seq, "");
        let id = r.container_id().unwrap();
        let e = rt
            .start(ContainerSpec {
                id: id.clone(),
                release: &r,
                image_config: &image,
                layer_dirs: &layers,
                secrets: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::Bundle(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(expect) && msg.contains(&r.image), "{msg}");
        fx.assert_clean(&id);
    }
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_command_that_exits_at_once_is_reported_stopped_with_its_code_and_output() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let r = fx.release(
        "oneshot",
        1,
        "command = [\"/bin/sh\", \"-c\", \"echo bye; echo oops >&2; exit 3\"]\n",
    );
    let id = r.container_id().unwrap();
    let layers = fx.layers("x");
    let image = image_config(|c| c);
    rt.start(ContainerSpec {
        id: id.clone(),
        release: &r,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    let deadline = Instant::now() + SECS_5;
    let info = loop {
        let c = rt.list().await.unwrap().pop().unwrap();
        if c.status == ContainerStatus::Stopped && c.exit_code.is_some() {
            break c;
        }
        assert!(Instant::now() < deadline, "still {:?}", c);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(info.exit_code, Some(3));
    let (out, err) = rt.log_paths(&id);
    assert_eq!(std::fs::read_to_string(out).unwrap(), "bye\n");
    assert_eq!(std::fs::read_to_string(err).unwrap(), "oops\n");
    let e = rt
        .exec(&id, &["/bin/true".into()], SECS_5)
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::NotRunning { .. }), "{e}");
    rt.discard(&id, SECS_5).await.unwrap();
    fx.assert_clean(&id);
}

#[tokio::test]
async fn a_container_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let layers = fx.layers("x");
    let image = image_config(|c| c);
    let stubborn = fx.release(
        "stubborn",
        1,
        "command = [\"/bin/sh\", \"-c\", \"trap '' TERM; while :; do sleep 1; done\"]\n",
    );
    let polite = fx.release(
        "polite",
        1,
        "command = [\"/bin/sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 0.05; done\"]\n",
    );
    let (s, p) = (
        stubborn.container_id().unwrap(),
        polite.container_id().unwrap(),
    );
    rt.start(ContainerSpec {
        id: s.clone(),
        release: &stubborn,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    rt.start(ContainerSpec {
        id: p.clone(),
        release: &polite,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    rt.discard(&p, Duration::from_secs(5)).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "polite took {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    rt.discard(&s, Duration::from_millis(800)).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "took {took:?}"
    );

    let rec = |id: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(fx.cfg.state_dir.join(id).join("state.json")).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(rec(&p)["exit_code"], 0);
    assert_eq!(rec(&s)["exit_code"], 137, "SIGKILL is 128+9");
    fx.assert_clean(&s);
    fx.assert_clean(&p);
}

#[tokio::test]
async fn discard_is_not_blocked_by_an_exec_orphaned_when_runc_exec_died() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let r = fx.release("orphans", 1, "");
    let id = r.container_id().unwrap();
    let layers = fx.layers("x");
    let image = image_config(|c| c);
    rt.start(ContainerSpec {
        id: id.clone(),
        release: &r,
        image_config: &image,
        layer_dirs: &layers,
        secrets: None,
    })
    .await
    .unwrap();
    // A `runc exec` killed before its process: the process is re-parented to us (the
    // subreaper) and, once killed with its container, waits as a zombie for us to reap it.
    let mut exec = std::process::Command::new("runc")
        .arg("--root")
        .arg(&fx.cfg.runc_root)
        .args(["exec", &id, "/bin/sleep", "30"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    exec.kill().unwrap();
    exec.wait().unwrap();
    let t = Instant::now();
    rt.discard(&id, Duration::ZERO).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    fx.assert_clean(&id);
}

#[tokio::test]
async fn image_user_spec_env_and_volumes_reach_the_process() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let data = fx.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("index.html"), "from the volume").unwrap();
    let r = fx.release(
        "vol",
        1,
        &format!(
            "command = [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/data\"]\n\
             [env]\nMODE = \"prod\"\n\
             [[volumes]]\nhost = \"{}\"\ncontainer = \"/data\"\nread_only = true\n",
            data.display()
        ),
    );
    let id = r.container_id().unwrap();
    let layers = fx.layers("x");
    // The image asks for user `www` (uid 33) by name and a working dir.
    let image = image_config(|c| c.user("www").working_dir("/www"));
    let info = rt
        .start(ContainerSpec {
            id: id.clone(),
            release: &r,
            image_config: &image,
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
    assert_eq!(get(info.address, SECS_5).unwrap(), "from the volume");
    let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.into()];
    let out = rt
        .exec(
            &id,
            &sh("echo $(id -u) $MODE $(pwd); echo x > /data/y"),
            SECS_5,
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().next(), Some("33 prod /www"), "{text}");
    assert_ne!(out.code, 0, "a read-only volume is not writable");
    assert!(!data.join("y").exists());
    rt.discard(&id, Duration::ZERO).await.unwrap();
    fx.assert_clean(&id);
    assert!(
        data.join("index.html").exists(),
        "volumes outlive the container"
    );
}

#[tokio::test]
async fn logs_of_only_the_newest_discarded_containers_are_kept() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let layers = fx.layers("x");
    let image = image_config(|c| c);
    let mut ids = Vec::new();
    for seq in 1..=5 {
        let r = fx.release(
            "logs",
            seq,
            "command = [\"/bin/sh\", \"-c\", \"echo run\"]\n",
        );
        let id = r.container_id().unwrap();
        rt.start(ContainerSpec {
            id: id.clone(),
            release: &r,
            image_config: &image,
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
        rt.discard(&id, Duration::ZERO).await.unwrap();
        ids.push(id);
    }
    let kept: Vec<bool> = ids.iter().map(|id| rt.log_paths(id).0.exists()).collect();
    assert_eq!(kept, [false, false, true, true, true]);
    // Tombstones remain: none of them can run again.
    for id in &ids {
        assert!(fx.cfg.state_dir.join(id).join("state.json").exists());
    }
}
