//! Host lifecycle end to end, on a real fleet (namespaced hosts with real agents, proxies and
//! runc): a host whose agent died is `down` after `host_down_after` and the next release
//! completes without it, with no halt; a cordoned host stays on the old release while the
//! others move and gets the live one when uncordoned; a drained host unroutes and discards
//! its app; a removed host is forgotten, its token revoked (its agent gets 401 and says why).

use serde_json::Value;
use slipway_tests::fleet::{ok, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::{busybox_httpd_image, Pushed};
use slipway_tests::registry::Registry;
use std::time::Duration;

const FAST: &str = "[health]\ndeadline = \"5s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"2s\"\n";
/// A host silent 4 s is down: before the 6 s after which a host of a started wave would count
/// as failed, so a vanished host is left out rather than failed.
const CONTROLLER: &str = "long_poll_max_wait = \"1s\"\nhost_down_after = \"4s\"\n\
     [rollout]\nsilent_after = \"6s\"\ntick = \"200ms\"\n";

fn push(reg: &Registry, app: &str, tag: &str, text: &str) -> Pushed {
    busybox_httpd_image(text)
        .push(reg.addr(), app, tag)
        .unwrap()
}

fn state(r: &Value) -> &str {
    r["state"].as_str().unwrap_or("")
}

fn hosts(f: &Fleet) -> Vec<Value> {
    serde_json::from_str::<Value>(&ok(f.slipway(0, &["--json", "hosts"])))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn host_info(f: &Fleet, id: &str) -> Value {
    hosts(f)
        .into_iter()
        .find(|h| h["host"] == id)
        .unwrap_or(Value::Null)
}

fn wait_body(f: &Fleet, id: &str, port: u16, text: &str) {
    let h = f.host(id);
    wait_until(Duration::from_secs(60), || h.body(port) == text).unwrap_or_else(|_| {
        panic!(
            "{id} never served `{text}` (serves `{}`)\n{}",
            h.body(port),
            h.log_tail("agent.log", 30)
        )
    });
}

/// Releases `image` and waits until its rollout is done, failing on a halt.
fn release_done(f: &Fleet, app: &str, image: &str, seq: u64) -> Value {
    ok(f.slipway(0, &["release", app, "--image", image]));
    let r = f.wait_rollout(app, Duration::from_secs(90), |r| {
        r["seq"] == seq && matches!(state(r), "done" | "halted")
    });
    assert_eq!(state(&r), "done", "rollout of seq {seq}: {r:#}");
    r
}

#[test]
fn down_cordoned_drained_and_removed_hosts() {
    let app = "fllife";
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let v: Vec<Pushed> = (1..=3)
        .map(|i| push(&f.registry, app, &format!("v{i}"), &format!("life v{i}")))
        .collect();
    f.add_hosts(app, 4, &format!("{{ fleet = \"{app}\" }}"), 0);
    let [h0, h1, h2, h3] = [0, 1, 2, 3].map(|i| format!("{app}-{i:02}"));
    f.apply(
        app,
        &format!(
            "name = \"{app}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n{FAST}\
             [rollout]\nselector = {{ fleet = \"{app}\" }}\ncanary = 1\nbatch_size = 2\n",
            v[0].repository
        ),
    );
    f.wait_registered();
    release_done(&f, app, &v[0].image_ref(), 1);
    for h in [&h0, &h1, &h2, &h3] {
        wait_body(&f, h, listen, "life v1");
    }

    // Host 03's agent dies (a terminated VM): after host_down_after it is down.
    f.host_mut(&h3).kill_agent();
    wait_until(Duration::from_secs(30), || {
        host_info(&f, &h3)["down"] == true
    })
    .expect("the silent host is shown as down");
    let table = ok(f.slipway(0, &["hosts"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(h3.as_str()) && l.contains("active, down")),
        "{table}"
    );
    wait_until(Duration::from_secs(10), || {
        ok(f.slipway(0, &["--json", "events"]))
            .lines()
            .any(|l| l.contains("\"host.down\"") && l.contains(&h3))
    })
    .expect("a host.down event names the host");

    // Host 02 cordoned: it keeps v1 while the others move to v2; no halt for the down host.
    let out = ok(f.slipway(0, &["hosts", "cordon", &h2]));
    assert!(out.contains("cordoned"), "{out}");
    let r = release_done(&f, app, &v[1].image_ref(), 2);
    assert_eq!(r["left_out"][&h2], "cordoned", "{r:#}");
    assert_eq!(r["left_out"][&h3], "down", "{r:#}");
    assert_eq!(r["failures"], 0, "{r:#}");
    for h in [&h0, &h1] {
        wait_body(&f, h, listen, "life v2");
    }
    assert_eq!(
        f.host(&h2).body(listen),
        "life v1",
        "the cordoned host keeps v1"
    );

    // Host 01 drained: its app is unrouted and its container discarded.
    ok(f.slipway(0, &["hosts", "drain", &h1]));
    let drained = f.host(&h1);
    wait_until(Duration::from_secs(60), || {
        drained.body(listen).is_empty() && drained.runc_list().is_empty()
    })
    .unwrap_or_else(|_| {
        panic!(
            "{h1} still serves `{}` / runs {:?}\n{}",
            drained.body(listen),
            drained.runc_list(),
            drained.log_tail("agent.log", 30)
        )
    });
    assert!(drained.get(listen).map_or(true, |(s, _)| s != 200));
    assert_eq!(host_info(&f, &h1)["lifecycle"], "drained");

    // Uncordoned, host 02 gets the live release (v2) at once.
    ok(f.slipway(0, &["hosts", "uncordon", &h2]));
    wait_body(&f, &h2, listen, "life v2");

    // Removing: an unknown host is refused, naming it; host 03 is forgotten, its token gone.
    let out = f.slipway(0, &["hosts", "remove", "no-such-host"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`no-such-host` is not registered"), "{err}");
    let out = ok(f.slipway(0, &["hosts", "remove", &h3]));
    assert!(out.contains(&format!("agent-{h3}")), "{out}");
    assert!(host_info(&f, &h3).is_null(), "removed hosts are not listed");
    let tokens = ok(f.slipway(0, &["token", "list"]));
    assert!(!tokens.contains(&format!("agent-{h3}")), "{tokens}");
    // Its agent, started again, is refused with a message saying why.
    f.host_mut(&h3).start_agent().unwrap();
    let back = f.host(&h3);
    wait_until(Duration::from_secs(30), || {
        back.log_tail("agent.log", 50)
            .contains("refused host fllife-03's agent token (401)")
    })
    .unwrap_or_else(|_| panic!("no clear 401 in:\n{}", back.log_tail("agent.log", 30)));
    assert!(
        host_info(&f, &h3).is_null(),
        "a refused agent does not come back"
    );

    // The next release reaches every host that is in: 00 and 02; the drained one stays empty.
    let r = release_done(&f, app, &v[2].image_ref(), 3);
    assert_eq!(r["left_out"][&h1], "drained", "{r:#}");
    for h in [&h0, &h2] {
        wait_body(&f, h, listen, "life v3");
    }
    assert!(f.host(&h1).body(listen).is_empty());
}

#[test]
fn hosts_join_with_one_token_and_get_releases_by_its_labels() {
    let app = "fljoin";
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let v1 = push(&f.registry, app, "v1", "joined v1");
    f.apply(
        app,
        &format!(
            "name = \"{app}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n{FAST}\
             [rollout]\nselector = {{ pool = \"{app}\" }}\ncanary = 0\nbatch_size = 2\n",
            v1.repository
        ),
    );
    let token = ok(f.slipway(
        0,
        &[
            "token",
            "create",
            "--role",
            "join",
            "--labels",
            &format!("pool={app}"),
            "--ttl",
            "1h",
            "--uses",
            "2",
        ],
    ))
    .trim()
    .to_string();
    f.join_hosts(app, 0..2, &token);
    // A third VM with the same token: used up, refused, and nothing of it registered.
    let reg = f.registry.addr().to_string();
    let third = slipway_tests::fleet::FleetHost::join(&f.lan, &[&reg], &token, "fljoin-02");
    let err = format!("{:#}", third.err().expect("the third join is refused"));
    assert!(err.contains("used up (2 of 2 hosts joined)"), "{err}");
    f.wait_registered();
    for h in [format!("{app}-00"), format!("{app}-01")] {
        assert_eq!(
            host_info(&f, &h)["labels"],
            serde_json::json!({"pool": app})
        );
    }
    assert!(host_info(&f, "fljoin-02").is_null());
    release_done(&f, app, &v1.image_ref(), 1);
    for h in [format!("{app}-00"), format!("{app}-01")] {
        wait_body(&f, &h, listen, "joined v1");
    }
}
