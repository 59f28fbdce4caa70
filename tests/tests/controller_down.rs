//! When the controller is down and a release's signature expires: the host keeps serving it,
//! marks it stale (status, log, and to the controller once reachable), accepts no unsigned or
//! expired change, and clears the stale mark when the controller is back and re-signs.
//!
//! The controller first runs with a short release validity and a re-signer that looks only
//! once an hour, so the release expires while the controller is up and the stale report is
//! seen on the controller deterministically. It is then SIGKILLed, forged and expired changes
//! are put in front of the agent, and it is restarted with a longer validity: its re-signer
//! runs at start and the refreshed release reaches the host.

use serde_json::Value;
use slipway_proto::api::DesiredSetBody;
use slipway_proto::{AppSpec, Envelope, Release, SigningKey};
use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const APP: &str = "downweb";
/// Signed for 20 s; re-signed only when less than 1 s remains, checked once an hour (after
/// the pass at start): the release expires while the controller is up.
const SHORT: &str =
    "release_validity = \"20s\"\nresign_before = \"1s\"\nresign_interval = \"1h\"\n";
/// After the outage: signed for an hour, so the refreshed release stays fresh for the test.
const LONG: &str = "release_validity = \"1h\"\nresign_before = \"30m\"\nresign_interval = \"1h\"\n";
/// Generous: a loaded 2-core machine, and the agent's backoff after the outage (up to 30 s).
const WAIT: Duration = Duration::from_secs(120);

/// The stale mark `slipway-agent status --json` puts on the app, if any.
fn agent_stale(host: &TestHost) -> Option<Value> {
    host.status()[APP].get("stale").cloned()
}

/// The stale releases `slipway --json hosts` lists for `host-a`.
fn controller_stale(controller: &Controller, admin: &str) -> Option<Vec<Value>> {
    let out = controller.slipway(admin, &["--json", "hosts"]);
    let hosts: Value = serde_json::from_slice(&out.stdout).ok()?;
    let h = hosts.as_array()?.iter().find(|h| h["host"] == "host-a")?;
    Some(
        h.get("stale")
            .and_then(|s| s.as_array().cloned())
            .unwrap_or_default(),
    )
}

/// Replaces the agent's cached desired set with `release` signed by `key` and restarts the
/// agent, which (the controller being down) serves from that cache.
fn restart_agent_with_cached(host: &mut TestHost, cache: &std::path::Path, env: Envelope) {
    host.kill_agent();
    let body = DesiredSetBody {
        version: "planted".into(),
        releases: BTreeMap::from([(APP.to_string(), env)]),
        ..Default::default()
    };
    std::fs::write(
        cache.join("desired.json"),
        serde_json::to_vec_pretty(&body).unwrap(),
    )
    .unwrap();
    host.start_agent().unwrap();
}

fn release(
    spec: &AppSpec,
    seq: u64,
    image: &str,
    issued: SystemTime,
    expires: SystemTime,
) -> Release {
    Release {
        app: APP.parse().unwrap(),
        seq,
        image: image.into(),
        spec: spec.clone(),
        issued_at: issued,
        expires,
        key_set_version: 1,
        annotations: BTreeMap::new(),
    }
}

#[test]
fn an_expired_release_keeps_serving_stale_refuses_changes_and_clears_when_re_signed() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("down v1")
        .push(registry.addr(), APP, "v1")
        .unwrap();
    let v2 = busybox_httpd_image("down v2")
        .push(registry.addr(), APP, "v2")
        .unwrap();

    let (mut controller, key) = Controller::prepare(SHORT);
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-a", "{ role = \"web\" }");
    let cache = controller.path().join("host-a-cache");
    controller.start();
    let mut host = TestHost::start_with(registry.addr(), key, &agent).unwrap();

    let listen = free_port();
    let app_text = format!(
        "name = \"{APP}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\nstop_grace = \"2s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n[rollout]\nselector = {{ role = \"web\" }}\n",
        v1.repository
    );
    let app_toml = controller.path().join("app.toml");
    std::fs::write(&app_toml, &app_text).unwrap();
    let spec = AppSpec::from_toml(&app_text).unwrap();
    let slipway = |c: &Controller, args: &[&str]| c.slipway(&admin, args);
    ok(slipway(
        &controller,
        &["app", "apply", "-f", app_toml.to_str().unwrap()],
    ));
    // Registered first, so the host is in the release's rollout plan.
    wait_until(WAIT, || controller_stale(&controller, &admin).is_some()).expect("host-a registers");
    ok(slipway(
        &controller,
        &["release", APP, "--image", &format!("{}:v1", v1.repository)],
    ));
    host.wait_for_body(listen, "down v1", WAIT).unwrap();
    let containers = host.runc_list();
    assert_eq!(containers.len(), 1, "{containers:?}");

    // 1. The signature expires while the controller is up but does not re-sign: the host
    //    keeps serving, says it is stale, and the controller shows it.
    wait_until(WAIT, || agent_stale(&host).is_some()).expect("the agent marks the app stale");
    let stale = agent_stale(&host).unwrap();
    assert_eq!(stale["seq"], 1, "{stale}");
    assert!(stale["expired_at"].is_string(), "{stale}");
    assert_eq!(get(listen).unwrap(), (200, "down v1".to_string()));
    wait_until(WAIT, || {
        controller_stale(&controller, &admin)
            .is_some_and(|s| s.iter().any(|r| r["app"] == APP && r["seq"] == 1))
    })
    .expect("`slipway hosts` shows host-a stale");
    let hosts = ok(slipway(&controller, &["hosts"]));
    assert!(
        hosts.contains(&format!("stale: {APP} seq 1 expired")),
        "{hosts}"
    );
    let status = ok(slipway(&controller, &["status", APP]));
    assert!(
        status.contains("live (stale: signature expired"),
        "{status}"
    );
    // Stale but live counts as live: the rollout is done, the host row marked stale.
    wait_until(WAIT, || {
        let out = slipway(&controller, &["rollout", APP]);
        let rollout = String::from_utf8_lossy(&out.stdout);
        rollout.contains(": done,") && rollout.contains("live (stale")
    })
    .unwrap_or_else(|_| panic!("{}", ok(slipway(&controller, &["rollout", APP]))));
    let warning =
        "still serving it (stale); no change is accepted until a freshly signed release arrives";
    wait_until(WAIT, || {
        host.log_tail("agent.log", 10_000).contains(warning)
    })
    .expect("the agent logs the stale warning");
    let text = std::process::Command::new(slipway_tests::bins::bin("slipway-agent"))
        .args(["status", "--config"])
        .arg(host.agent_config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("signature EXPIRED at"), "{text}");
    assert!(text.contains("still serving (stale)"), "{text}");

    // 2. Controller down (SIGKILL): the host keeps serving the same bytes, still stale.
    controller.stop();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(listen).unwrap(), (200, "down v1".to_string()));
    assert_eq!(agent_stale(&host).unwrap()["seq"], 1);

    // A change signed by a key the host does not trust is refused; nothing moves.
    let now = SystemTime::now();
    let stranger = SigningKey::generate().unwrap();
    let forged = release(
        &spec,
        2,
        &v2.image_ref(),
        now,
        now + Duration::from_secs(3600),
    );
    restart_agent_with_cached(
        &mut host,
        &cache,
        Envelope::sign_release(&forged, &[&stranger]),
    );
    wait_until(WAIT, || {
        host.status()[APP]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no signature is by a trusted key"))
    })
    .unwrap_or_else(|_| {
        panic!(
            "forged release not refused\n{}",
            host.log_tail("agent.log", 30)
        )
    });
    // A change signed by the trusted key but already expired is refused too.
    let expired = release(
        &spec,
        2,
        &v2.image_ref(),
        now - Duration::from_secs(120),
        now - Duration::from_secs(60),
    );
    let expired = Envelope::sign_release(&expired, &[&host.key]);
    restart_agent_with_cached(&mut host, &cache, expired);
    wait_until(WAIT, || {
        host.status()[APP]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{APP} seq 2 expired at")))
    })
    .unwrap_or_else(|_| {
        panic!(
            "expired release not refused\n{}",
            host.log_tail("agent.log", 30)
        )
    });
    let st = host.status();
    assert_eq!(st[APP]["accepted_seq"], 1, "{st}");
    assert_eq!(st[APP]["live_seq"], 1, "{st}");
    assert_eq!(st[APP]["stale"]["seq"], 1, "{st}");
    assert_eq!(get(listen).unwrap(), (200, "down v1".to_string()));
    assert_eq!(host.runc_list(), containers);
    assert!(host.log_tail("agent.log", 10_000).contains("refused"));

    // 3. The controller is back (on the same data dir, now signing for an hour): it re-signs
    //    the expired release at start, the host takes the fresh signature of the same seq
    //    without redeploying, and stale clears on the host and on the controller.
    let config = std::fs::read_to_string(&controller.config).unwrap();
    std::fs::write(&controller.config, config.replace(SHORT, LONG)).unwrap();
    controller.start();
    wait_until(WAIT, || {
        let st = host.status();
        st[APP].get("stale").is_none() && st[APP]["accepted_seq"] == 1
    })
    .unwrap_or_else(|_| panic!("stale never cleared\n{}", host.log_tail("agent.log", 40)));
    wait_until(WAIT, || {
        controller_stale(&controller, &admin).is_some_and(|s| s.is_empty())
    })
    .expect("`slipway hosts` no longer shows host-a stale");
    assert!(!ok(slipway(&controller, &["hosts"])).contains("stale:"));
    assert_eq!(get(listen).unwrap(), (200, "down v1".to_string()));
    assert_eq!(host.runc_list(), containers);
    let log = host.log_tail("agent.log", 10_000);
    assert!(
        log.contains("release re-signed; signature refreshed"),
        "{log}"
    );
    wait_until(WAIT, || {
        host.log_tail("agent.log", 10_000).contains("stale cleared")
    })
    .expect("the agent logs that the stale mark cleared");
    let audit: Value =
        serde_json::from_str(&ok(slipway(&controller, &["--json", "audit"]))).unwrap();
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "release.resign"
            && e["object"] == format!("release/{APP}/1").as_str()));

    // The agent in controller mode would wait for a removal that never comes: stop it, and
    // let the host's drop force its container and network away.
    host.kill_agent();
}
