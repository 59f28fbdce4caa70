//! The agent's controller source (`slipway_agent::source::controller`) against a real
//! controller: register, long-poll, report, and keep serving the cached set while the
//! controller is down.

mod support;

use serde_json::json;
use slipway_agent::source::controller::{ControllerSource, ControllerSourceConfig, CACHE_FILE};
use slipway_proto::api::{HostStatus, Phase, Role};
use slipway_proto::Envelope;
use slipway_tests::registry::Registry;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};
use support::*;

fn source_config(h: &Harness, host: &str, token: &str) -> ControllerSourceConfig {
    let token_file = h.dir.path().join(format!("{host}.token"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    ControllerSourceConfig {
        url: h.url.clone(),
        host_id: host.to_string(),
        labels: BTreeMap::from([("role".to_string(), "web".to_string())]),
        token_file,
        cache_dir: h.dir.path().join(format!("cache-{host}")),
        ca_cert: None,
    }
}

fn seq_of(h: &Harness, bytes: &[u8]) -> (u64, String) {
    let env = Envelope::from_json(bytes).unwrap();
    let v = env.verify_release(&h.trust, SystemTime::now()).unwrap();
    (v.release.seq, v.image.to_string())
}

#[tokio::test]
async fn controller_source_follows_the_controller_and_serves_its_cache_while_it_is_down() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let v2 = push_image(&registry, "v2", "two");
    let mut h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
    h.post(
        "/v1/apps/web/releases",
        &h.admin,
        &json!({"image": v1.image_ref()}),
    )
    .await;
    let token = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let cfg = source_config(&h, "h1", &token);
    let mut src = ControllerSource::new(cfg.clone())
        .unwrap()
        .with_poll_wait(Duration::from_millis(800));

    // First poll registers the host and gets the set at once.
    let set = src.next().await.unwrap();
    assert!(!set.from_cache);
    assert_eq!(seq_of(&h, &set.releases["web"]), (1, v1.image_ref()));
    let (_, hosts) = h.get("/v1/hosts", &h.admin).await;
    assert_eq!(hosts[0]["labels"]["role"], "web");
    assert!(cfg.cache_dir.join(CACHE_FILE).exists());

    // Nothing new: the poll waits, then the same set.
    let t = Instant::now();
    let same = src.next().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        (same.version.as_str(), same.from_cache),
        (set.version.as_str(), false)
    );

    // A publish during the poll answers it.
    let poll = tokio::spawn(async move {
        let mut src = src.with_poll_wait(Duration::from_secs(20));
        let t = Instant::now();
        let set = src.next().await.unwrap();
        (src, set, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.post(
        "/v1/apps/web/releases",
        &h.admin,
        &json!({"image": v2.image_ref()}),
    )
    .await;
    let (src, set2, waited) = poll.await.unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(seq_of(&h, &set2.releases["web"]), (2, v2.image_ref()));

    // Status reports land on the controller.
    src.report(&HostStatus {
        app: "web".into(),
        seq: 2,
        image: Some(v2.image_ref()),
        phase: Phase::Live,
        expired_at: None,
    })
    .await
    .unwrap();
    let (_, status) = h.get("/v1/status", &h.admin).await;
    assert_eq!(
        (status[0]["host"].as_str(), status[0]["phase"].as_str()),
        (Some("h1"), Some("live"))
    );

    // The controller dies mid-long-poll: the poll ends, the set is kept.
    let poll = tokio::spawn(async move {
        let mut src = src;
        let set = src.next().await.unwrap();
        (src, set)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.stop().await;
    let (mut src, during) = poll.await.unwrap();
    assert_eq!(during.version, set2.version);
    assert!(!during.releases.is_empty());

    // While it is down: the cached set, marked as such, never an empty one.
    for _ in 0..3 {
        let cached = src.next().await.unwrap();
        assert!(cached.from_cache);
        assert_eq!(cached.version, set2.version);
        assert_eq!(cached.releases, set2.releases);
    }
    assert!(src
        .report(&HostStatus {
            app: "web".into(),
            seq: 2,
            image: None,
            phase: Phase::Live,
            expired_at: None,
        })
        .await
        .is_err());

    // An agent restarted while the controller is down serves the set from disk.
    let mut restarted = ControllerSource::new(cfg.clone()).unwrap();
    let from_disk = restarted.next().await.unwrap();
    assert!(from_disk.from_cache);
    assert_eq!(from_disk.version, set2.version);
    assert_eq!(seq_of(&h, &from_disk.releases["web"]).0, 2);

    // The controller comes back: the source reconnects by itself.
    h.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let back = loop {
        let s = src.next().await.unwrap();
        if !s.from_cache {
            break s;
        }
        assert!(Instant::now() < deadline, "never reconnected");
    };
    assert_eq!(back.version, set2.version);
}

#[tokio::test]
async fn controller_source_with_another_hosts_token_gets_nothing() {
    let h = Harness::start().await;
    let token = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let cfg = source_config(&h, "h2", &token);
    let mut src = ControllerSource::new(cfg.clone()).unwrap();
    let err = src.next().await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("403") && msg.contains("host `h2`"), "{msg}");
    assert!(!cfg.cache_dir.join(CACHE_FILE).exists());
}

/// The source takes the controller's set whole: verifying each release is the reconciler's
/// job, per app, so a release this host will refuse neither makes the set look like an
/// unreachable controller nor has the source fetch it again and again.
#[tokio::test]
async fn controller_source_takes_a_set_whole_even_with_a_release_the_host_will_refuse() {
    let registry = Registry::start().unwrap();
    let v1 = push_image(&registry, "v1", "one");
    let h = Harness::start().await;
    h.apply(&app_toml(&v1.repository)).await;
    h.post(
        "/v1/apps/web/releases",
        &h.admin,
        &json!({"image": v1.image_ref()}),
    )
    .await;
    let token = h.token("agent-h1", Role::Agent, Some("h1")).await;
    let cfg = source_config(&h, "h1", &token);
    let mut src = ControllerSource::new(cfg.clone())
        .unwrap()
        .with_poll_wait(Duration::from_millis(800));
    let set = src.next().await.unwrap();
    assert!(!set.from_cache);
    assert!(cfg.cache_dir.join(CACHE_FILE).exists());
    // A host trusting another key refuses the release (the reconciler says so, for `web`).
    let other = slipway_proto::TrustFile::new(
        vec![slipway_proto::SigningKey::generate().unwrap().public_key()],
        1,
        1,
    )
    .unwrap();
    let err = Envelope::from_json(&set.releases["web"])
        .unwrap()
        .verify_release(&other, SystemTime::now())
        .unwrap_err();
    assert!(
        err.to_string().contains("no signature is by a trusted key"),
        "{err}"
    );
    // The set was taken: the next poll waits for a change instead of fetching it again.
    let t = Instant::now();
    let same = src.next().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        (same.version.as_str(), same.from_cache),
        (set.version.as_str(), false)
    );
}
