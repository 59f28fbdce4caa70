//! One side of a fleet upgraded at a time: the controller serves agents one minor version
//! older or newer, refuses others before they register (naming both versions), shows the
//! skew in `GET /v1/hosts`, and reads agent bodies carrying fields it does not know.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use slipway_proto::api::Role;
use slipway_proto::version::VERSION;
use support::*;

/// `VERSION` with its minor version moved by `by`.
fn minor(by: i64) -> String {
    let mut parts: Vec<i64> = VERSION
        .split(['.', '-'])
        .take(3)
        .map(|p| p.parse().unwrap())
        .collect();
    parts[1] += by;
    parts[2] = 0;
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

#[tokio::test]
async fn agents_one_minor_apart_are_served_and_further_ones_refused() {
    let (_registry, [v1], h) = web_app(["v1"]).await;
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": format!("{}:v1", v1.repository)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let register = |host: &'static str, version: String| {
        let h = &h;
        async move {
            let token = h
                .token(&format!("agent-{host}"), Role::Agent, Some(host))
                .await;
            let body = json!({"labels": {"role": "web"}, "agent_version": version,
                              "host_key": {"from": "a newer agent"}, "zz": [1, 2]});
            h.post(&format!("/v1/hosts/{host}/register"), &token, &body)
                .await
        }
    };
    let (s, v) = register("same", VERSION.to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v.get("skew").is_none(), "{v}");
    let (s, v) = register("newer", minor(1)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["skew"], "+1 minor");

    let far = minor(2);
    let (s, v) = register("far", far.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(&far) && msg.contains(VERSION) && msg.contains("host far"),
        "{msg}"
    );
    let (s, v) = register("junk", "tuesday".into()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("`tuesday`"), "{v}");

    // Refused hosts were not registered; the others show their skew.
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["newer", "same"], "{hosts}");

    // A status report and a long-poll with fields and parameters this version lacks.
    let (s, _) = register("poller", VERSION.to_string()).await;
    assert_eq!(s, StatusCode::OK);
    let token = h.token("agent-poller2", Role::Agent, Some("poller")).await;
    let (s, v) = h
        .post(
            "/v1/hosts/poller/status",
            &token,
            &json!({"app": "web", "seq": 1, "phase": "live", "pulled_bytes": 12}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = h
        .get("/v1/hosts/poller/desired?wait=1s&compress=zstd", &token)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
