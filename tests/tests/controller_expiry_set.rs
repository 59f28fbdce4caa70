//! One expired release in the desired set holds up nothing else: the agent judges each
//! release on its own. App `seta` and app `setb` go to the same host through a real
//! controller that signs for a short time and does not re-sign:
//!
//! 1. `seta` seq 1 is live and its signature expires (stale); a new `setb` release arrives in
//!    the same set as the expired `seta` seq 1. `setb` deploys; `seta` keeps serving, stale,
//!    with no error: it is the release already live, not a change (also when a restarted
//!    agent reads it afresh).
//! 2. With the agent down, `seta` seq 2 is released and expires before the agent is back, and
//!    `setb` seq 2 is released. The set the agent then gets holds an expired change for `seta`:
//!    it is refused for `seta` alone (log and `last error` name the app, the seq, the expiry
//!    and the seq kept), `seta` keeps its container, and `setb` seq 2 deploys.
//!
//! Neither is taken for an unreachable controller.

use serde_json::Value;
use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::time::{Duration, Instant};

const A: &str = "seta";
const B: &str = "setb";
/// Signed for 30 s and re-signed only at start (the interval is an hour away); the rollout
/// never gives up on the host while its agent is down for a while.
const CONFIG: &str = "release_validity = \"30s\"\nresign_before = \"1s\"\nresign_interval = \"1h\"\n[rollout]\nsilent_after = \"1h\"\ndeploy_margin = \"1h\"\n";
const VALIDITY: Duration = Duration::from_secs(30);
/// Generous: a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(120);
const UNREACHABLE: &str = "controller unreachable";

fn app_toml(name: &str, repository: &str, listen: u16) -> String {
    format!(
        "name = \"{name}\"\nimage = \"{repository}\"\nlisten = {listen}\ncontainer_port = 80\nstop_grace = \"2s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n[rollout]\nselector = {{ role = \"web\" }}\n"
    )
}

/// `text` without terminal colour codes (the agent's log is coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ params letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Releases `app` at `tag` of `repository`; returns when the controller answered.
fn release(controller: &Controller, admin: &str, app: &str, repository: &str, tag: &str) {
    ok(controller.slipway(
        admin,
        &["release", app, "--image", &format!("{repository}:{tag}")],
    ));
}

#[test]
fn an_expired_release_in_the_set_is_refused_for_its_app_only() {
    let registry = Registry::start().unwrap();
    let a1 = busybox_httpd_image("set a v1")
        .push(registry.addr(), A, "v1")
        .unwrap();
    let a2 = busybox_httpd_image("set a v2")
        .push(registry.addr(), A, "v2")
        .unwrap();
    let b1 = busybox_httpd_image("set b v1")
        .push(registry.addr(), B, "v1")
        .unwrap();
    let b2 = busybox_httpd_image("set b v2")
        .push(registry.addr(), B, "v2")
        .unwrap();

    let (mut controller, key) = Controller::prepare(CONFIG);
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-a", "{ role = \"web\" }");
    controller.start();
    let mut host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    let (listen_a, listen_b) = (free_port(), free_port());
    for (name, repo, listen) in [(A, &a1.repository, listen_a), (B, &b1.repository, listen_b)] {
        let path = controller.path().join(format!("{name}.toml"));
        std::fs::write(&path, app_toml(name, repo, listen)).unwrap();
        ok(controller.slipway(&admin, &["app", "apply", "-f", path.to_str().unwrap()]));
    }
    // Registered first, so the host is in the releases' rollout plans.
    wait_until(WAIT, || {
        ok(controller.slipway(&admin, &["hosts"])).contains("host-a")
    })
    .expect("host-a registers");

    release(&controller, &admin, A, &a1.repository, "v1");
    host.wait_for_body(listen_a, "set a v1", WAIT).unwrap();
    let a_container = host.runc_list();
    assert_eq!(a_container.len(), 1, "{a_container:?}");
    let a_container = a_container[0].clone();

    // 1. seta seq 1 expires while live; then a set with it and a fresh setb arrives.
    wait_until(WAIT, || host.status()[A].get("stale").is_some())
        .expect("the agent marks seta stale");
    release(&controller, &admin, B, &b1.repository, "v1");
    host.wait_for_body(listen_b, "set b v1", WAIT).unwrap();
    wait_until(WAIT, || host.status()[B]["live_seq"] == 1).expect("setb seq 1 live");
    assert_eq!(get(listen_a).unwrap(), (200, "set a v1".to_string()));
    let st = host.status();
    assert_eq!(st[A]["live_seq"], 1, "{st}");
    assert_eq!(st[A]["stale"]["seq"], 1, "{st}");
    assert!(st[A]["last_error"].is_null(), "{st}");
    let log = host.log_tail("agent.log", 100_000);
    assert!(!log.contains("release for app"), "{log}");
    assert!(!log.contains(UNREACHABLE), "{log}");
    // A restarted agent reads expired seta seq 1 afresh: kept as the stale live release.
    host.kill_agent();
    host.start_agent().unwrap();
    wait_until(WAIT, || {
        host.log_tail("agent.log", 100_000)
            .contains("keeping it (stale) until a freshly signed release arrives")
    })
    .unwrap_or_else(|_| panic!("{}", host.log_tail("agent.log", 40)));
    let st = host.status();
    assert!(st[A]["last_error"].is_null(), "{st}");
    assert_eq!(st[A]["stale"]["seq"], 1, "{st}");
    assert_eq!(get(listen_a).unwrap(), (200, "set a v1".to_string()));
    assert_eq!(get(listen_b).unwrap(), (200, "set b v1".to_string()));
    let log = host.log_tail("agent.log", 100_000);
    assert!(!log.contains("release for app"), "{log}");
    // The controller sees seta stale in its rollout's host rows (API and CLI).
    wait_until(WAIT, || {
        let out = controller.slipway(&admin, &["--json", "rollout", A]);
        let ro: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        ro["hosts"][0]["expired_at"].is_string()
    })
    .expect("the rollout's host row of seta is marked stale");
    assert!(ok(controller.slipway(&admin, &["rollout", A])).contains("live (stale"));

    // 2. Agent down: seta seq 2 is released and expires meanwhile; setb seq 2 is fresh.
    host.kill_agent();
    release(&controller, &admin, A, &a2.repository, "v2");
    let a2_released = Instant::now();
    std::thread::sleep(VALIDITY + Duration::from_secs(2));
    release(&controller, &admin, B, &b2.repository, "v2");
    assert!(a2_released.elapsed() > VALIDITY);
    host.start_agent().unwrap();

    host.wait_for_body(listen_b, "set b v2", WAIT).unwrap();
    wait_until(WAIT, || host.status()[B]["live_seq"] == 2).expect("setb seq 2 live");
    let refusal = format!("{A} seq 2 expired at");
    wait_until(WAIT, || {
        host.status()[A]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&refusal))
    })
    .unwrap_or_else(|_| panic!("seta seq 2 not refused\n{}", host.log_tail("agent.log", 40)));
    let st = host.status();
    assert_eq!(st[A]["accepted_seq"], 1, "{st}");
    assert_eq!(st[A]["live_seq"], 1, "{st}");
    assert_eq!(get(listen_a).unwrap(), (200, "set a v1".to_string()));
    assert!(
        host.runc_list().contains(&a_container),
        "{:?}",
        host.runc_list()
    );
    let log = plain(&host.log_tail("agent.log", 100_000));
    let line = log
        .lines()
        .find(|l| l.contains(&refusal))
        .unwrap_or_else(|| panic!("no refusal logged\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&format!("app=\"{A}\"")), "{line}");
    assert!(line.contains("nothing changes (keeping seq 1)"), "{line}");
    assert_eq!(
        log.matches(&refusal).count(),
        1,
        "refused once, not retried\n{log}"
    );
    assert!(!log.contains(UNREACHABLE), "{log}");

    // The agent in controller mode would wait for a removal that never comes: stop it, and
    // let the host's drop force its containers and networks away.
    host.kill_agent();
}
