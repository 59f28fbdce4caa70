//! Containers created ahead of their start (`Runtime::create`, `start_created`) on real runc,
//! real CNI and real network namespaces: nothing runs before the start, the start goes through
//! the exec fifo as `runc start` does, and a dead or dropped one leaves nothing.
//! Needs root, runc, containernetworking-plugins, iproute2 and busybox-static.

mod common;

use common::*;
use slipway_runtime::{ContainerSpec, ContainerStatus};
use std::time::Duration;

const SECS_5: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_container_created_ahead_runs_nothing_until_started_and_leaves_nothing_if_dropped() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let image = image_config(|c| c);
    let (r1, r2) = (fx.release("web", 1, ""), fx.release("web", 2, ""));
    let (l1, l2) = (fx.layers("ready"), fx.layers("dropped"));
    let spec = |r, l| ContainerSpec {
        id: slipway_proto::Release::container_id(r).unwrap(),
        release: r,
        image_config: &image,
        layer_dirs: l,
        secrets: None,
    };
    let a = rt.create(spec(&r1, &l1)).await.unwrap();
    assert_eq!(a.status, ContainerStatus::Created);
    // Made, addressed and known to runc, but its process has not run: nothing answers.
    assert!(fx.runc_list().contains(&a.id.to_string()));
    assert_eq!(fx.runc_status(&a.id), "created");
    assert_eq!(
        rt.get(&a.id).await.unwrap().unwrap().status,
        ContainerStatus::Created
    );
    assert!(!a.address.is_unspecified());
    assert!(try_get(a.address).is_err());
    // The second start of a created container is refused, and so is `start` of its id.
    let again = rt.start(spec(&r1, &l1)).await.unwrap_err();
    assert!(again.to_string().contains("exists"), "{again}");
    let started = rt.start_created(&a.id).await.unwrap();
    assert_eq!(started.status, ContainerStatus::Running);
    assert_eq!(
        rt.process_alive(&a.id),
        Some(true),
        "its reaper knows it runs"
    );
    assert_eq!(rt.process_alive("web-9-000000000000"), None);
    assert_eq!(get(a.address, SECS_5).unwrap(), "ready");
    // Started through its exec fifo, as `runc start` does: runc sees it running.
    assert_eq!(fx.runc_status(&a.id), "running");
    let twice = rt.start_created(&a.id).await.unwrap_err();
    assert!(
        twice.to_string().contains("not a created container"),
        "{twice}"
    );
    assert_eq!(get(a.address, SECS_5).unwrap(), "ready");

    // One created ahead and never started (its release did not come) is dropped whole.
    let b = rt.create(spec(&r2, &l2)).await.unwrap();
    assert!(fx.netns_exists(&b.id));
    rt.discard(&b.id, Duration::ZERO).await.unwrap();
    fx.assert_gone(&b.id);
    assert!(rt.get(&b.id).await.unwrap().is_none());
    assert_eq!(get(a.address, SECS_5).unwrap(), "ready");
    rt.discard(&a.id, Duration::ZERO).await.unwrap();
    assert_ne!(rt.process_alive(&a.id), Some(true), "discarded");
    fx.assert_clean(&a.id);
}

#[tokio::test]
async fn a_created_container_whose_process_died_is_refused_at_start_and_torn_down() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let image = image_config(|c| c);
    let r1 = fx.release("web", 1, "");
    let l1 = fx.layers("never");
    let a = rt.create(common::spec(&r1, &image, &l1)).await.unwrap();
    let pid = a.pid.expect("a created container has its init's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), rt.start_created(&a.id))
        .await
        .expect("a start of a dead container does not hang")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&a.id.to_string()) && e.contains("ended before it was started"),
        "{e}"
    );
    fx.assert_gone(&a.id);
}
