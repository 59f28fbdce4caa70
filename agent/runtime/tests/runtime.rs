//! The runtime on real runc, real CNI (bridge + host-local) and real network namespaces.
//! Needs root, runc, containernetworking-plugins, iproute2 and busybox-static.

mod common;

use common::*;
use slipway_runtime::{ContainerSpec, RuntimeError, Status};
use std::time::{Duration, Instant};

const SECS_5: Duration = Duration::from_secs(5);

#[tokio::test]
async fn serves_its_page_with_limits_in_its_cgroup_and_leaves_nothing_after_discard() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let release = fx.release("web", 1, "[resources]\nmemory_mb = 64\ncpus = 0.5\n");
    let id = release.container_id().unwrap();
    let layers = fx.layers("hello from seq 1");
    let image = image_config(|c| c);
    let spec = || ContainerSpec {
        id: id.clone(),
        release: &release,
        image_config: &image,
        layer_dirs: &layers,
    };
    let info = rt.start(spec()).await.unwrap();
    assert_eq!((info.app.as_str(), info.seq), ("web", 1));
    assert_eq!(info.status, Status::Running);
    assert!(info.address.to_string().starts_with("10.213."), "{}", info.address);
    assert_eq!(get(info.address, SECS_5).unwrap(), "hello from seq 1");

    assert_eq!(read_cgroup("memory", &id, "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read_cgroup("cpu", &id, "cpu.cfs_period_us"), "100000");

    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].status, Status::Running);
    assert!(fx.netns_exists(&id));
    assert!(!fx.veths().is_empty());

    // Read-only root, writable /tmp.
    let argv = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.into()];
    let out = rt.exec(&id, &argv("echo x > /www/f"), SECS_5).await.unwrap();
    assert_ne!(out.code, 0, "root must be read-only");
    let out = rt.exec(&id, &argv("echo ok > /tmp/f && cat /tmp/f"), SECS_5).await.unwrap();
    assert_eq!((out.code, out.stdout.as_slice()), (0, b"ok\n".as_slice()));

    // The same release cannot run twice.
    let e = rt.start(spec()).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Exists { .. }), "{e}");

    rt.discard(&id, Duration::from_secs(1)).await.unwrap();
    fx.assert_clean(&id);
    assert!(rt.list().await.unwrap().is_empty());
    assert!(std::path::Path::new(&format!("/sys/fs/cgroup/memory/slipway/{id}")).exists() == false);
    // Idempotent, and still refused after discard.
    rt.discard(&id, Duration::from_secs(1)).await.unwrap();
    let e = rt.start(spec()).await.unwrap_err();
    assert!(matches!(e, RuntimeError::Exists { .. }), "{e}");
}
