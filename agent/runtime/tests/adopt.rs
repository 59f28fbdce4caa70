//! Agent crashes (SIGKILL) between `runc create` and `runc start`, and between `runc start`
//! and recording it; then a new runtime adopts. The crashing agent is this test binary
//! re-run as a child process (`crash_helper`), killed by SIGKILL at the chosen point.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use slipway_proto::Release;
use slipway_runtime::{ContainerSpec, ContainerStatus, CrashPoint, RuntimeConfig};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

const SECS_5: Duration = Duration::from_secs(5);
const PLAN: &str = "SLIPWAY_RUNTIME_CRASH_PLAN";

#[derive(Serialize, Deserialize)]
struct Plan {
    cfg: RuntimeConfig,
    layers: Vec<PathBuf>,
    healthy: Release,
    doomed: Release,
    crash: String,
}

/// The crashing agent: starts `healthy`, then dies by SIGKILL in the middle of `doomed`.
#[tokio::test]
#[ignore = "run by the crash tests as a child process"]
async fn crash_helper() {
    let Ok(plan) = std::env::var(PLAN) else {
        return;
    };
    let plan: Plan = serde_json::from_str(&plan).unwrap();
    let rt = slipway_runtime::Runtime::new(plan.cfg).unwrap();
    let image = image_config(|c| c);
    let point = match plan.crash.as_str() {
        "network" => CrashPoint::AfterNetwork,
        "create" => CrashPoint::AfterCreate,
        _ => CrashPoint::AfterStart,
    };
    for (r, crash) in [(&plan.healthy, None), (&plan.doomed, Some(point))] {
        rt.crash_at(crash);
        rt.start(ContainerSpec {
            id: r.container_id().unwrap(),
            release: r,
            image_config: &image,
            layer_dirs: &plan.layers,
            secrets: None,
        })
        .await
        .unwrap();
    }
    unreachable!("the agent should have been killed");
}

/// Runs the crashing agent and returns (fixture, healthy id, doomed id).
fn crash(fx: &Fixture, at: &str) -> (slipway_proto::ContainerId, slipway_proto::ContainerId) {
    let plan = Plan {
        cfg: fx.cfg.clone(),
        layers: fx.layers("still here"),
        healthy: fx.release("web", 1, ""),
        doomed: fx.release("web", 2, ""),
        crash: at.into(),
    };
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crash_helper", "--test-threads=1"])
        .env(PLAN, serde_json::to_string(&plan).unwrap())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the agent must die by SIGKILL: {status:?}"
    );
    // A `runc create` the killed agent had started runs on to its end (as it would after a
    // real crash, before the agent is restarted): wait for it, so what is adopted is final.
    let root = fx.cfg.runc_root.to_string_lossy().to_string();
    let creating = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains(&root) && c.contains("\0create\0")
            })
        })
    };
    for _ in 0..100 {
        if !creating() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        plan.healthy.container_id().unwrap(),
        plan.doomed.container_id().unwrap(),
    )
}

#[tokio::test]
async fn crash_between_create_and_start_is_cleaned_and_healthy_containers_keep_running() {
    let fx = Fixture::new();
    // The restarted agent: created first so it is the subreaper the orphans go to.
    let rt = fx.runtime();
    let (healthy, doomed) = crash(&fx, "create");
    assert_eq!(
        fx.runc_list().len(),
        2,
        "both exist in runc after the crash"
    );
    let before = rt.list().await.unwrap();
    let h = before.iter().find(|c| c.id == healthy).unwrap().clone();
    assert_eq!(h.status, ContainerStatus::Running);
    assert_eq!(
        before.iter().find(|c| c.id == doomed).unwrap().status,
        ContainerStatus::Created
    );

    let report = rt.adopt(&|c| c.app == "web").await.unwrap();
    assert_eq!(report.adopted, vec![healthy.clone()]);
    assert_eq!(report.cleaned, vec![doomed.clone()]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);

    // The healthy one was never touched: same process, still serving.
    let after = rt.list().await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].pid, after[0].status),
        (h.pid, ContainerStatus::Running)
    );
    assert_eq!(get(h.address, SECS_5).unwrap(), "still here");
    // The half-made one left nothing behind.
    fx.assert_gone(&doomed);
    assert_eq!(fx.veth_count(), 1);
    assert_eq!(fx.runc_list(), vec![healthy.clone()]);

    // Adopting again changes nothing.
    let again = rt.adopt(&|_| true).await.unwrap();
    assert_eq!(
        (again.adopted, again.cleaned),
        (vec![healthy.to_string()], vec![])
    );

    // The adopted container is supervised: discard reaps it and records its exit.
    rt.discard(&healthy, Duration::ZERO).await.unwrap();
    fx.assert_clean(&healthy);
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fx.cfg.state_dir.join(&healthy).join("state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["phase"], "discarded");
    assert_eq!(rec["exit_code"], 137);
}

#[tokio::test]
async fn crash_between_start_and_recording_it_is_adopted_not_restarted() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let (healthy, started) = crash(&fx, "start");
    let rec = |id: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(fx.cfg.state_dir.join(id).join("state.json")).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        rec(&started)["phase"],
        "created",
        "the crash came before recording the start"
    );

    let report = rt.adopt(&|_| true).await.unwrap();
    let mut adopted = report.adopted.clone();
    adopted.sort();
    assert_eq!(adopted, vec![healthy.clone(), started.clone()]);
    assert!(
        report.cleaned.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(rec(&started)["phase"], "started");
    for c in rt.list().await.unwrap() {
        assert_eq!(c.status, ContainerStatus::Running);
        assert_eq!(get(c.address, SECS_5).unwrap(), "still here");
    }
    for id in [&healthy, &started] {
        rt.discard(id, Duration::ZERO).await.unwrap();
    }
    fx.assert_clean(&healthy);
    fx.assert_clean(&started);
    assert!(fx.runc_list().is_empty());
}

#[tokio::test]
async fn unknown_running_containers_are_left_running_for_the_caller() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let (healthy, started) = crash(&fx, "start");
    let report = rt.adopt(&|c| c.seq == 2).await.unwrap();
    assert_eq!(report.adopted, vec![started.clone()]);
    assert_eq!(report.unknown, vec![healthy.clone()]);
    assert_eq!(fx.runc_list().len(), 2);
    for id in [&healthy, &started] {
        rt.discard(id, Duration::ZERO).await.unwrap();
    }
    fx.assert_clean(&healthy);
}

#[tokio::test]
async fn crash_after_wiring_the_network_releases_netns_veth_and_address() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let (healthy, doomed) = crash(&fx, "network");
    assert!(
        fx.netns_exists(&doomed),
        "the crash left a wired netns without a container"
    );
    assert_eq!(fx.veth_count(), 2);
    // `runc create` runs beside CNI ADD, so the crash may also have left a created
    // container: the adoption below cleans both.
    let ipam = fx.cfg.state_dir.join("_ipam/slipway");
    let allocated = || {
        std::fs::read_dir(&ipam)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("10.")
            })
            .count()
    };
    assert_eq!(allocated(), 2);

    let report = rt.adopt(&|_| true).await.unwrap();
    assert_eq!(report.adopted, vec![healthy.clone()]);
    assert_eq!(report.cleaned, vec![doomed.clone()]);
    fx.assert_gone(&doomed);
    assert_eq!(fx.veth_count(), 1);
    assert_eq!(
        allocated(),
        1,
        "the CNI address of the half-made container is released"
    );

    // Nothing ran under the doomed id, so its release may be started again (a retry after
    // the crash), and it serves.
    let again = fx.release("web", 2, "");
    let layers = fx.layers("retried");
    let image = image_config(|c| c);
    let info = rt
        .start(ContainerSpec {
            id: doomed.clone(),
            release: &again,
            image_config: &image,
            layer_dirs: &layers,
            secrets: None,
        })
        .await
        .unwrap();
    assert_eq!(get(info.address, SECS_5).unwrap(), "retried");
    rt.discard(&doomed, Duration::ZERO).await.unwrap();
    fx.assert_gone(&doomed);
    rt.discard(&healthy, Duration::ZERO).await.unwrap();
    fx.assert_clean(&healthy);
    assert_eq!(allocated(), 0);
}
