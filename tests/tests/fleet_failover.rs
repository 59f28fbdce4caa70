//! Two controllers (real processes) on one PostgreSQL database and a fleet of hosts: the
//! replica driving a rollout is killed (SIGKILL) mid-rollout and the other one takes the lead
//! and carries the same rollout on from the stored state, to the end.

use serde_json::Value;
use slipway_tests::fleet::{ok, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::postgres::Postgres;
use std::time::Duration;

/// Fast health and bake, so a wave is live within a couple of seconds.
const FAST: &str = "[health]\ndeadline = \"5s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"2s\"\n";
/// Short long-polls so live hosts are heard often; a quick driver tick.
const CONTROLLER: &str =
    "long_poll_max_wait = \"1s\"\n[rollout]\nsilent_after = \"6s\"\ntick = \"200ms\"\n";
const HOSTS: usize = 4;

fn state(r: &Value) -> &str {
    r["state"].as_str().unwrap_or("")
}

/// `text` without ANSI colour sequences (the log may be coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
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

/// Whether a controller's log says it took the rollout lead.
fn leads(log: &str) -> bool {
    plain(log)
        .lines()
        .any(|l| l.contains("rollout driver lead changed") && l.contains("leading=true"))
}

#[test]
fn the_driving_controller_killed_mid_rollout_the_other_replica_finishes_it() {
    let app = "flfailover";
    let pg = Postgres::start().unwrap();
    let url = pg.create_database("fleet").unwrap();
    // Controller 0 starts first and normally takes the lead; hosts poll the other one.
    let mut f = Fleet::start(2, &format!("database_url = \"{url}\"\n{CONTROLLER}"));
    let mut leader = None;
    wait_until(Duration::from_secs(10), || {
        leader = (0..2).find(|i| leads(&f.controllers[*i].log_tail(usize::MAX)));
        leader.is_some()
    })
    .unwrap_or_else(|_| panic!("no controller led:\n{}", f.controllers[0].log_tail(30)));
    let leader = leader.unwrap();
    let follower = 1 - leader;
    assert!(
        !leads(&f.controllers[follower].log_tail(usize::MAX)),
        "one leader at a time:\n{}",
        f.controllers[follower].log_tail(30)
    );

    let listen = free_port();
    let v1 = busybox_httpd_image("failover v1")
        .push(f.registry.addr(), app, "v1")
        .unwrap();
    f.add_hosts(app, HOSTS, &format!("{{ fleet = \"{app}\" }}"), follower);
    // One host per wave with a pause after each: long enough to kill the leader mid-way.
    f.apply(
        app,
        &format!(
            "name = \"{app}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n{FAST}\
             [rollout]\nselector = {{ fleet = \"{app}\" }}\ncanary = 1\nbatch_size = 1\n\
             pause = \"3s\"\n",
            v1.repository
        ),
    );
    f.wait_registered();
    ok(f.slipway(leader, &["release", app, "--image", &v1.image_ref()]));

    // Mid-rollout: the canary and the next wave started, the last wave not yet.
    let before = f.wait_rollout(app, Duration::from_secs(90), |r| {
        state(r) == "running" && r["started"].as_u64().unwrap_or(0) >= 2
    });
    assert!(
        (before["started"].as_u64().unwrap() as usize) < HOSTS,
        "killed too late to matter: {before}"
    );
    f.controllers[leader].stop();

    // The follower takes the lead and finishes the very same rollout (same seq, no new plan).
    let after = f.wait_rollout(app, Duration::from_secs(120), |r| state(r) == "done");
    assert!(
        leads(&f.controllers[follower].log_tail(usize::MAX)),
        "the follower took the lead:\n{}",
        f.controllers[follower].log_tail(30)
    );
    assert_eq!(after["seq"], before["seq"], "{after}");
    assert_eq!(
        after["waves"], before["waves"],
        "the stored plan, carried on"
    );
    assert_eq!(after["failures"], 0, "{after}");
    assert_eq!(after["started"].as_u64().unwrap() as usize, HOSTS);
    for h in &f.hosts {
        wait_until(Duration::from_secs(60), || h.body(listen) == "failover v1").unwrap_or_else(
            |_| panic!("{} never served v1:\n{}", h.id, h.log_tail("agent.log", 30)),
        );
    }
    drop(f);
    drop(pg);
}
