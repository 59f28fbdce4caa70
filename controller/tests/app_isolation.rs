//! Isolation between apps: one app whose stored rollout is corrupt never stops another app's
//! rollout or empties the desired set of its hosts.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_controller::rollout::isolate::Stage;
use slipway_proto::api::Role;
use slipway_tests::registry::Registry;
use std::time::{Duration, Instant, SystemTime};
use support::*;

async fn report_live(h: &Harness, agent: &str, app: &str, seq: u64) {
    let (s, v) = h
        .post(
            "/v1/hosts/h1/status",
            agent,
            &json!({"app": app, "seq": seq, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
}

async fn wait_rollout(h: &Harness, app: &str, seq: u64, state: &str) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = h.get(&format!("/v1/apps/{app}/rollout"), &h.admin).await;
        if v["seq"] == seq && v["state"] == state {
            return;
        }
        assert!(Instant::now() < end, "{app} never reached {state}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seqs(set: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = set["releases"]
        .as_object()
        .unwrap()
        .keys()
        .map(|app| (app.clone(), 0))
        .collect();
    for (app, seq) in out.iter_mut() {
        let env = slipway_proto::Envelope::from_json(
            set["releases"][app.as_str()].to_string().as_bytes(),
        )
        .unwrap();
        *seq = slipway_controller::publish::release_body(&env).unwrap().seq;
    }
    out
}

#[tokio::test]
async fn a_broken_app_never_stops_another_apps_rollout_or_desired_set() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    let h = Harness::start_with("[rollout]\ntick = \"50ms\"\n").await;
    h.apply(&app_toml(&v1.repository)).await;
    h.apply(&format!(
        "name = \"api\"\nimage = \"{}\"\nlisten = 8081\ncontainer_port = 80\n",
        v1.repository
    ))
    .await;
    let agent = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let (s, _) = h
        .post("/v1/hosts/h1/register", &agent, &json!({"labels": {}}))
        .await;
    assert_eq!(s, StatusCode::OK);
    for app in ["web", "api"] {
        let (s, v) = h
            .post(
                &format!("/v1/apps/{app}/releases"),
                &h.admin,
                &json!({"image": format!("{}:v1", v1.repository)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        report_live(&h, &agent, app, 1).await;
        wait_rollout(&h, app, 1, "done").await;
    }

    // The stored rollout of `api` becomes unreadable.
    let store = &h.running().state.store;
    let rec = store.latest_rollout("api").await.unwrap().unwrap();
    assert!(store
        .update_rollout("api", 1, rec.rev, "{not a rollout", SystemTime::now())
        .await
        .unwrap());

    // `web` still releases, rolls out and completes; h1 keeps `api` seq 1 meanwhile.
    let (s, v) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v2", v2.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let end = Instant::now() + Duration::from_secs(10);
    let set = loop {
        let (s, set) = h.get("/v1/hosts/h1/desired", &agent).await;
        assert_eq!(s, StatusCode::OK);
        if seqs(&set).contains(&("web".into(), 2)) {
            break set;
        }
        assert!(Instant::now() < end, "web seq 2 never reached h1: {set}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        seqs(&set),
        vec![("api".to_string(), 1), ("web".to_string(), 2)],
        "the broken app keeps what its hosts were last told"
    );
    report_live(&h, &agent, "web", 2).await;
    wait_rollout(&h, "web", 2, "done").await;

    // The broken app is named, with its reason, once per stage.
    let errors = &h.running().state.rollouts.errors;
    for stage in [Stage::Driver, Stage::View] {
        let failing = errors.failing(stage);
        assert_eq!(failing.len(), 1, "{stage:?}: {failing:?}");
        assert_eq!(failing[0].0, "api");
        assert!(
            failing[0].1.contains("rollout of api seq 1 is corrupt"),
            "{failing:?}"
        );
    }
    let (s, v) = h.get("/v1/apps/api/rollout", &h.admin).await;
    assert!(!s.is_success(), "{v}");
}
