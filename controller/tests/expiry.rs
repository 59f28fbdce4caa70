//! Signature expiry across a fleet: every release a host is still told to run is re-signed
//! (not only the newest), and a host serving a release past its expiry shows as stale until
//! it reports a fresh signature, without upsetting the rollout.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use slipway_proto::api::Role;
use slipway_tests::registry::Registry;
use std::time::{Duration, Instant};
use support::*;

/// `app_toml` plus a `[rollout]` section.
fn with_rollout(repository: &str, rollout: &str) -> String {
    format!("{}[rollout]\n{rollout}", app_toml(repository))
}

/// How many times the audit log says `release/web/<seq>` was re-signed.
async fn resigns(h: &Harness, seq: u64) -> usize {
    let (_, log) = h.get("/v1/audit?limit=10000", &h.admin).await;
    let object = format!("release/web/{seq}");
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "release.resign" && e["object"] == object.as_str())
        .count()
}

/// Waits (generously) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 60 s");
}

#[tokio::test]
async fn releases_hosts_still_hold_mid_rollout_are_resigned_and_released_ones_are_not() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    // Valid 30 s, re-signed once less than 28 s remain: about every 2 s while held.
    let h = Harness::start_with(
        "release_validity = \"30s\"\nresign_before = \"28s\"\nresign_interval = \"200ms\"",
    )
    .await;
    let t1 = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let t2 = h.token("agent-h2", Role::Agent, Some("h2")).await;
    h.post(
        "/v1/hosts/h1/register",
        &t1,
        &json!({"labels": {"slipway.canary": "true"}}),
    )
    .await;
    h.post("/v1/hosts/h2/register", &t2, &json!({})).await;

    // Seq 1 reaches both hosts in one wave.
    h.apply(&with_rollout(
        &v1.repository,
        "canary = 0\nbatch_size = \"100%\"\n",
    ))
    .await;
    let release = |image: String| {
        let h = &h;
        async move {
            let (s, r) = h
                .post(
                    "/v1/apps/web/releases",
                    &h.admin,
                    &json!({ "image": image }),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
        }
    };
    release(v1.image_ref()).await;
    // Seq 2 goes to the canary h1, then waits for manual promotion: h2 keeps seq 1.
    h.apply(&with_rollout(
        &v1.repository,
        "canary = 1\nmanual_promotion = true\n",
    ))
    .await;
    release(v2.image_ref()).await;
    let (_, set1) = h.get("/v1/hosts/h1/desired", &t1).await;
    assert_eq!(verify(&h, &set1["releases"]["web"]).release.seq, 2);
    let (_, set2) = h.get("/v1/hosts/h2/desired", &t2).await;
    let held = verify(&h, &set2["releases"]["web"]);
    assert_eq!((held.release.seq, &held.image.digest), (1, &v1.digest));

    // h2's seq 1 is re-signed (same seq and image, later expiry) and reaches it.
    let (s, next) = h
        .get(
            &format!(
                "/v1/hosts/h2/desired?version={}&wait=20s",
                set2["version"].as_str().unwrap()
            ),
            &t2,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "h2's seq 1 was never re-signed");
    let again = verify(&h, &next["releases"]["web"]);
    assert_eq!(again.release.seq, 1);
    assert_eq!(again.image, held.image);
    assert!(again.release.expires > held.release.expires);
    let (_, rel) = h.get("/v1/apps/web/releases/1", &h.admin).await;
    assert!(verify(&h, &rel["envelope"]).release.expires >= again.release.expires);

    // Seq 3 goes to every host at once: nobody holds seq 1 or 2 any more, so they are left
    // to expire while seq 3 keeps being re-signed.
    h.apply(&with_rollout(
        &v1.repository,
        "canary = 0\nbatch_size = \"100%\"\n",
    ))
    .await;
    release(v1.image_ref()).await;
    let base = resigns(&h, 3).await;
    eventually("seq 3 re-signed twice", || async {
        resigns(&h, 3).await >= base + 2
    })
    .await;
    let (old1, old2, mid) = (
        resigns(&h, 1).await,
        resigns(&h, 2).await,
        resigns(&h, 3).await,
    );
    eventually("seq 3 re-signed twice more", || async {
        resigns(&h, 3).await >= mid + 2
    })
    .await;
    assert_eq!(
        resigns(&h, 1).await,
        old1,
        "seq 1 re-signed though no host holds it"
    );
    assert_eq!(
        resigns(&h, 2).await,
        old2,
        "seq 2 re-signed though no host holds it"
    );
    for (host, tok) in [("h1", &t1), ("h2", &t2)] {
        let (_, set) = h.get(&format!("/v1/hosts/{host}/desired"), tok).await;
        assert_eq!(verify(&h, &set["releases"]["web"]).release.seq, 3);
    }
}

#[tokio::test]
async fn a_host_serving_an_expired_release_shows_stale_counts_as_live_and_clears_when_fresh() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    let t1 = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let t2 = h.token("agent-h2", Role::Agent, Some("h2")).await;
    h.post(
        "/v1/hosts/h1/register",
        &t1,
        &json!({"labels": {"slipway.canary": "true"}}),
    )
    .await;
    h.post("/v1/hosts/h2/register", &t2, &json!({})).await;
    h.apply(&with_rollout(&v1.repository, "canary = 1\n")).await;
    let (s, r) = h
        .post(
            "/v1/apps/web/releases",
            &h.admin,
            &json!({"image": v1.image_ref()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");

    // A malformed expiry is refused and changes nothing.
    let (s, e) = h
        .post(
            "/v1/hosts/h1/status",
            &t1,
            &json!({"app": "web", "seq": 1, "phase": "live", "expired_at": "last tuesday"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["error"].as_str().unwrap().contains("expired_at"), "{e}");
    let (_, rows) = h.get("/v1/status", &h.admin).await;
    assert_eq!(rows, json!([]));

    // The canary h1 serves seq 1 past its expiry: live, and stale.
    let (s, e) = h
        .post(
            "/v1/hosts/h1/status",
            &t1,
            &json!({"app": "web", "seq": 1, "phase": "live", "expired_at": "2001-02-03T04:05:06Z"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{e}");
    let host = |hosts: &Value, id: &str| {
        hosts
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["host"] == id)
            .cloned()
            .unwrap()
    };
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    let stale = &host(&hosts, "h1")["stale"];
    assert_eq!(stale[0]["app"], "web");
    assert_eq!(stale[0]["seq"], 1);
    assert!(stale[0]["expired_at"]
        .as_str()
        .unwrap()
        .starts_with("2001-02-03T04:05:06"));
    assert!(host(&hosts, "h2").get("stale").is_none(), "{hosts}");
    let (_, rows) = h.get("/v1/status?app=web", &h.admin).await;
    assert!(rows[0]["expired_at"]
        .as_str()
        .unwrap()
        .starts_with("2001-02-03T04:05:06"));
    assert_eq!(rows[0]["phase"], "live");
    let (_, log) = h.get("/v1/events?app=web", &h.admin).await;
    assert!(log
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "host.phase"
            && e["detail"]["host"] == "h1"
            && e["detail"]["expired_at"]
                .as_str()
                .is_some_and(|t| t.starts_with("2001-02-03T04:05:06"))));

    // Stale but live counts as live: the next wave (h2) starts.
    eventually("the wave after the stale canary starts", || async {
        let (_, ro) = h.get("/v1/apps/web/rollout", &h.admin).await;
        ro["hosts"].as_array().is_some_and(|hs| {
            hs.iter()
                .any(|x| x["host"] == "h2" && x["desired_seq"] == 1)
        })
    })
    .await;
    // The rollout's host rows carry the stale mark too; h2 reported nothing, so it has none.
    let (_, ro) = h.get("/v1/apps/web/rollout", &h.admin).await;
    let row = |id: &str| host(&ro["hosts"], id);
    assert_eq!(row("h1")["reported_seq"], 1, "{ro}");
    assert!(
        row("h1")["expired_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2001-02-03T04:05:06")),
        "{ro}"
    );
    assert!(row("h2").get("expired_at").is_none(), "{ro}");

    // A fresh signature reached h1: it reports live without an expiry, and stale clears.
    let (s, _) = h
        .post(
            "/v1/hosts/h1/status",
            &t1,
            &json!({"app": "web", "seq": 1, "phase": "live"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    assert!(host(&hosts, "h1").get("stale").is_none(), "{hosts}");
    let (_, rows) = h.get("/v1/status?app=web", &h.admin).await;
    assert!(rows[0].get("expired_at").is_none(), "{rows}");
    let (_, ro) = h.get("/v1/apps/web/rollout", &h.admin).await;
    assert!(host(&ro["hosts"], "h1").get("expired_at").is_none(), "{ro}");
}
