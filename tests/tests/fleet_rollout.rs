//! Fleet rollouts end to end: a real controller, a real registry, and several hosts (proxy +
//! agent processes, each with its own address, state, runc root and bridge). Releases go out
//! in waves; failures halt and roll back by themselves.

use serde_json::Value;
use slipway_tests::fleet::{ok, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::{busybox_httpd_image, busybox_layer, ImageBuilder, Pushed, TarBuilder};
use slipway_tests::load::Load;
use slipway_tests::registry::Registry;
use std::time::Duration;

/// Fast health and bake, so a wave is live within a couple of seconds.
const FAST: &str = "[health]\ndeadline = \"5s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"2s\"\n";
/// Short silence deadline: agents' long-polls are cut at 1 s so live hosts are heard often.
const CONTROLLER: &str =
    "long_poll_max_wait = \"1s\"\n[rollout]\nsilent_after = \"4s\"\ntick = \"200ms\"\n";

fn app_toml(name: &str, image: &str, listen: u16, rollout: &str) -> String {
    format!(
        "name = \"{name}\"\nimage = \"{image}\"\nlisten = {listen}\ncontainer_port = 80\n{FAST}\
         [rollout]\nselector = {{ fleet = \"{name}\" }}\n{rollout}\n"
    )
}

/// An image whose httpd listens on the wrong port: it starts, and never passes health.
fn broken_image(text: &str) -> slipway_tests::image::Image {
    ImageBuilder::new()
        .layer(busybox_layer())
        .layer_from_tar(TarBuilder::new().dir("www", 0o755).file(
            "www/index.html",
            text.as_bytes(),
            0o644,
        ))
        .cmd(&["/bin/busybox", "httpd", "-f", "-p", "81", "-h", "/www"])
        .expose("80/tcp")
        .build()
}

fn release(f: &Fleet, app: &str, image: &str) {
    f.wait_registered();
    ok(f.slipway(0, &["release", app, "--image", image]));
}

fn state(r: &Value) -> &str {
    r["state"].as_str().unwrap_or("")
}

fn wait_bodies(f: &Fleet, hosts: &[&str], port: u16, text: &str) {
    for h in hosts {
        let host = f.host(h);
        wait_until(Duration::from_secs(60), || host.body(port) == text).unwrap_or_else(|_| {
            panic!(
                "{h} never served `{text}` (serves `{}`)\n{}",
                host.body(port),
                host.log_tail("agent.log", 30)
            )
        });
    }
}

fn host_row<'a>(r: &'a Value, host: &str) -> &'a Value {
    r["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or(&Value::Null)
}

/// Starts hosts `{app}-00`..`{app}-{n-1}` selected by the app; host 00 is labelled the canary
/// (`slipway.canary=true`), so it goes first whatever the hash order of the others.
fn add_hosts_canary_first(f: &mut Fleet, app: &str, n: usize, registries: &[&str]) {
    let labels = format!("{{ fleet = \"{app}\" }}");
    let canary = format!("{{ fleet = \"{app}\", \"slipway.canary\" = \"true\" }}");
    f.add_hosts_with(app, 0..1, &canary, 0, registries);
    f.add_hosts_with(app, 1..n, &labels, 0, registries);
}

/// The hosts of a rollout in wave order.
fn wave_order(r: &Value) -> Vec<String> {
    r["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w.as_array().unwrap().iter())
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

fn push(reg: &Registry, app: &str, tag: &str, text: &str) -> Pushed {
    busybox_httpd_image(text)
        .push(reg.addr(), app, tag)
        .unwrap()
}

/// Hosts `APP-00..02` (00 the canary) in waves of 1 and 2 with manual promotion; releases
/// `v1` and returns the rollout once the canary awaits promotion.
fn canary_awaiting_promotion(f: &mut Fleet, app: &str, v1: &Pushed, listen: u16) -> Value {
    let reg = f.registry.addr().to_string();
    add_hosts_canary_first(f, app, 3, &[&reg]);
    f.apply(
        app,
        &app_toml(
            app,
            &v1.repository,
            listen,
            "canary = 1\nbatch_size = 2\nmanual_promotion = true\n",
        ),
    );
    release(f, app, &v1.image_ref());
    f.wait_rollout(app, Duration::from_secs(60), |r| {
        state(r) == "awaiting-promotion"
    })
}

#[test]
fn canary_failure_halts_rolls_back_and_touches_no_other_host() {
    let app = "flcanary";
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let v1 = push(&f.registry, app, "v1", "canary v1");
    let v2 = broken_image("canary v2")
        .push(f.registry.addr(), app, "v2")
        .unwrap();
    // v1: the canary goes first and waits for promotion; nobody else has it yet.
    let r = canary_awaiting_promotion(&mut f, app, &v1, listen);
    assert_eq!(r["waves"][0], serde_json::json!([format!("{app}-00")]));
    let mut rest = wave_order(&r)[1..].to_vec();
    rest.sort();
    assert_eq!(rest, [format!("{app}-01"), format!("{app}-02")]);
    wait_bodies(&f, &[&format!("{app}-00")], listen, "canary v1");
    assert_eq!(
        f.host(&format!("{app}-01")).body(listen),
        "",
        "second wave waits"
    );
    ok(f.slipway(0, &["rollout", "promote", app]));
    f.wait_rollout(app, Duration::from_secs(60), |r| state(r) == "done");
    let all: Vec<String> = (0..3).map(|i| format!("{app}-{i:02}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_bodies(&f, &all, listen, "canary v1");

    // v2 never passes health: halted after the canary, which gets seq 3 (v1's digest).
    let loads: Vec<Load> = f
        .hosts
        .iter()
        .map(|h| Load::start(h.addr(listen), 1))
        .collect();
    release(&f, app, &v2.image_ref());
    let r = f.wait_rollout(app, Duration::from_secs(90), |r| {
        r["kind"] == "rollback" && state(r) == "done"
    });
    assert_eq!(r["seq"], 3);
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("canary") && reason.contains("failed"),
        "{reason}"
    );
    assert_eq!(r["waves"], serde_json::json!([[format!("{app}-00")]]));
    for (i, load) in loads.into_iter().enumerate() {
        let rep = load.finish();
        assert_eq!(rep.failed, 0, "host {i}: {:?}", rep.errors);
        assert!(!rep.bodies.contains_key("canary v2"));
    }
    wait_bodies(&f, &all, listen, "canary v1");
    let status: Value =
        serde_json::from_str(&ok(f.slipway(0, &["--json", "status", app]))).unwrap();
    let seq_of = |h: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["host"] == h)
            .map(|s| (s["seq"].clone(), s["phase"].clone()))
    };
    assert_eq!(seq_of(all[0]), Some((3.into(), "live".into())));
    // No other host was touched: they still run seq 1.
    assert_eq!(seq_of(all[1]), Some((1.into(), "live".into())));
    assert_eq!(seq_of(all[2]), Some((1.into(), "live".into())));
    let hist: Value = serde_json::from_str(&ok(f.slipway(0, &["--json", "history", app]))).unwrap();
    let r3 = hist
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seq"] == 3)
        .unwrap();
    assert_eq!(r3["image"], v1.image_ref());
    assert_eq!(r3["rollback_of"], 1);
    // The later hosts hear of a release ahead only once the first wave has switched to it,
    // which the failed canary never did: they never pulled v2 nor made its container, and
    // each runs only seq 1's.
    let v2_digest = v2.digest.to_string();
    for h in &all[1..] {
        let host = f.host(h);
        let v1_id = slipway_proto::ContainerId::for_release(&app.parse().unwrap(), 1, &v1.digest);
        let only_v1 = vec![(v1_id.to_string(), "running".to_string())];
        wait_until(Duration::from_secs(30), || host.runc_states() == only_v1).unwrap_or_else(
            |_| {
                panic!(
                    "{h}: runc has {:?}\n{}",
                    host.runc_states(),
                    host.log_tail("agent.log", 30)
                )
            },
        );
        let log = std::fs::read_to_string(host.dir.path().join("agent.log")).unwrap();
        let v2_ahead = log.lines().find(|l| {
            (l.contains("pulled ahead of the host's wave") && l.contains(&v2_digest))
                || (l.contains("container made ahead of the host's wave") && l.contains("seq=2"))
        });
        assert!(v2_ahead.is_none(), "{h} prepared v2 ahead: {v2_ahead:?}");
    }
}

#[test]
fn a_later_batch_failure_continues_within_the_budget_and_halts_beyond_it() {
    let app = "flbudget";
    let mut f = Fleet::start(1, CONTROLLER);
    // v2 and v3 live in a second registry that host 02 cannot reach (no plain HTTP to it).
    let other = &f.spare_registry;
    let listen = free_port();
    let v1 = push(&f.registry, app, "v1", "budget v1");
    let v2 = push(other, app, "v2", "budget v2");
    let v3 = push(other, app, "v3", "budget v3");
    let labels = format!("{{ fleet = \"{app}\" }}");
    let (a, b) = (f.registry.addr().to_string(), other.addr().to_string());
    let canary = format!("{{ fleet = \"{app}\", \"slipway.canary\" = \"true\" }}");
    f.add_hosts_with(app, 0..1, &canary, 0, &[&a, &b]);
    f.add_hosts_with(app, 1..2, &labels, 0, &[&a, &b]);
    f.add_hosts_with(app, 2..3, &labels, 0, &[&a]);
    f.add_hosts_with(app, 3..4, &labels, 0, &[&a, &b]);
    let rollout = |max| format!("canary = 1\nbatch_size = 1\nmax_failures = {max}\n");
    f.apply(app, &app_toml(app, &v1.repository, listen, &rollout(1)));
    release(&f, app, &v1.image_ref());
    let first = f.wait_rollout(app, Duration::from_secs(90), |r| state(r) == "done");
    let order = wave_order(&first);
    let all: Vec<String> = (0..4).map(|i| format!("{app}-{i:02}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_bodies(&f, &all, listen, "budget v1");

    // Within the budget (1): host 02 fails to pull, the rollout carries on to host 03.
    f.apply(app, &app_toml(app, &v2.repository, listen, &rollout(1)));
    release(&f, app, &v2.image_ref());
    let r = f.wait_rollout(app, Duration::from_secs(90), |r| state(r) == "done");
    assert_eq!(r["failures"], 1);
    assert!(
        host_row(&r, all[2])["failed"]
            .as_str()
            .unwrap()
            .contains("pull"),
        "{r}"
    );
    wait_bodies(&f, &[all[0], all[1], all[3]], listen, "budget v2");
    assert_eq!(
        f.host(all[2]).body(listen),
        "budget v1",
        "old container kept serving"
    );

    // Beyond the budget (0): halted at host 02; the hosts up to it (in wave order) get a
    // rollback to v2's digest, the hosts after it are never touched.
    let at = order.iter().position(|h| h == all[2]).unwrap();
    let (got, untouched) = order.split_at(at + 1);
    f.apply(app, &app_toml(app, &v3.repository, listen, &rollout(0)));
    release(&f, app, &v3.image_ref());
    let r = f.wait_rollout(app, Duration::from_secs(120), |r| r["kind"] == "rollback");
    assert_eq!(r["seq"], 4);
    let reason = r["reason"].as_str().unwrap();
    assert!(reason.contains("more than max_failures = 0"), "{reason}");
    assert_eq!(
        r["waves"],
        serde_json::json!([got]),
        "the rollback goes to the hosts that got seq 3"
    );
    wait_bodies(&f, &[all[0], all[1], all[3]], listen, "budget v2");
    let hist: Value = serde_json::from_str(&ok(f.slipway(0, &["--json", "history", app]))).unwrap();
    let r4 = hist
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["seq"] == 4)
        .unwrap();
    assert_eq!(r4["image"], v2.image_ref());
    let r = f.wait_rollout(app, Duration::from_secs(60), |r| state(r) == "done");
    assert_eq!(host_row(&r, all[0])["reported_seq"], 4);
    assert_eq!(host_row(&r, all[0])["desired_seq"], 4);
    let status: Value =
        serde_json::from_str(&ok(f.slipway(0, &["--json", "status", app]))).unwrap();
    for h in untouched {
        assert_eq!(
            host_row(&r, h)["desired_seq"],
            serde_json::Value::Null,
            "{h} is outside the rollback plan"
        );
        let row = status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["host"] == h.as_str())
            .unwrap();
        assert_eq!(row["seq"], 2, "{h} never got seq 3 or 4");
    }
}

#[test]
fn hosts_of_later_waves_pull_and_create_ahead_and_run_nothing_until_their_wave() {
    let app = "flahead";
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let v1 = push(&f.registry, app, "v1", "ahead v1");
    canary_awaiting_promotion(&mut f, app, &v1, listen);
    // While the canary waits for promotion, the other two have v1's image in their stores
    // (manifest, config and every layer, verified), and run and serve nothing.
    let later = [format!("{app}-01"), format!("{app}-02")];
    let v1_id = slipway_proto::ContainerId::for_release(&app.parse().unwrap(), 1, &v1.digest);
    let mut blobs = vec![v1.digest.clone()];
    blobs.extend(v1.config.iter().map(|c| c.digest.clone()));
    blobs.extend(v1.layers.iter().map(|l| l.digest.clone()));
    for h in &later {
        let host = f.host(h);
        wait_until(Duration::from_secs(30), || {
            blobs.iter().all(|b| host.has_blob(b))
        })
        .unwrap_or_else(|_| {
            panic!(
                "{h} did not pull v1 ahead of its wave\n{}",
                host.log_tail("agent.log", 30)
            )
        });
        assert!(
            std::fs::read_to_string(host.dir.path().join("agent.log"))
                .unwrap()
                .contains("image pulled ahead of the host's wave"),
            "{h} logs the pull ahead"
        );
        // Its container is made (runc create) but not started: no code of v1 runs.
        let made = vec![(v1_id.to_string(), "created".to_string())];
        wait_until(Duration::from_secs(30), || host.runc_states() == made).unwrap_or_else(|_| {
            panic!(
                "{h}: runc has {:?}, not v1's container created and waiting\n{}",
                host.runc_states(),
                host.log_tail("agent.log", 30)
            )
        });
        assert_eq!(host.body(listen), "", "{h} serves nothing before its wave");
    }
    // Promoted: their wave finds the image stored and goes live.
    ok(f.slipway(0, &["rollout", "promote", app]));
    f.wait_rollout(app, Duration::from_secs(60), |r| state(r) == "done");
    let ids: Vec<&str> = later.iter().map(String::as_str).collect();
    wait_bodies(&f, &ids, listen, "ahead v1");
    for h in &later {
        let log = std::fs::read_to_string(f.host(h).dir.path().join("agent.log")).unwrap();
        assert_eq!(
            log.matches("image pulled ahead of the host's wave").count(),
            1,
            "{h} pulled ahead once"
        );
        assert!(
            log.contains("started the container made ahead of the wave"),
            "{h} started the container it made ahead\n{}",
            f.host(h).log_tail("agent.log", 40)
        );
        let running = vec![(v1_id.to_string(), "running".to_string())];
        assert_eq!(
            f.host(h).runc_states(),
            running,
            "{h} runs v1's one container"
        );
    }
}

/// Three hosts `APP-00..02` serving `APP v1` after a rollout with `rollout` settings (promoted
/// by hand when they ask for it); `APP v2` is pushed too. Returns the fleet, the app's port,
/// v2 and the host ids.
fn three_hosts_on_v1(app: &str, rollout: &str) -> (Fleet, u16, Pushed, Vec<String>) {
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let v1 = push(&f.registry, app, "v1", &format!("{app} v1"));
    let v2 = push(&f.registry, app, "v2", &format!("{app} v2"));
    let reg = f.registry.addr().to_string();
    add_hosts_canary_first(&mut f, app, 3, &[&reg]);
    f.apply(app, &app_toml(app, &v1.repository, listen, rollout));
    release(&f, app, &v1.image_ref());
    if rollout.contains("manual_promotion = true") {
        f.wait_rollout(app, Duration::from_secs(60), |r| {
            state(r) == "awaiting-promotion"
        });
        ok(f.slipway(0, &["rollout", "promote", app]));
    }
    f.wait_rollout(app, Duration::from_secs(90), |r| state(r) == "done");
    let all: Vec<String> = (0..3).map(|i| format!("{app}-{i:02}")).collect();
    let ids: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_bodies(&f, &ids, listen, &format!("{app} v1"));
    (f, listen, v2, all)
}

#[test]
fn a_silent_host_is_left_out_not_failed_and_new_hosts_get_the_live_release() {
    let app = "flsilent";
    // No failure allowed: counting the dead host as one would halt the rollout.
    let (mut f, listen, v2, all) = three_hosts_on_v1(
        app,
        "canary = 1\nbatch_size = 1\nmax_failures = 0\npause = \"1s\"\n",
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let labels = format!("{{ fleet = \"{app}\" }}");

    // Host 01's agent dies before the release: it never takes it, so after the silence
    // deadline its wave leaves it out as down (a terminated VM is no failure of the release)
    // and the rollout carries on instead of hanging or halting.
    f.host_mut(all[1]).kill_agent();
    release(&f, app, &v2.image_ref());
    let r = f.wait_rollout(app, Duration::from_secs(90), |r| {
        r["seq"] == 2 && (state(r) == "done" || state(r) == "halted")
    });
    assert_eq!(state(&r), "done", "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["left_out"][all[1]], "down", "{r}");
    wait_bodies(&f, &[all[0], all[2]], listen, "flsilent v2");
    assert_eq!(
        f.host(all[1]).body(listen),
        "flsilent v1",
        "its proxy keeps serving"
    );

    // Scale-out: a new host with matching labels gets the live release at once.
    let reg = f.registry.addr().to_string();
    f.add_hosts_with(app, 3..4, &labels, 0, &[&reg]);
    wait_bodies(&f, &[&format!("{app}-03")], listen, "flsilent v2");
}

#[test]
fn a_host_that_vanishes_mid_rollout_is_left_out_and_converges_when_it_returns() {
    let app = "flvanish";
    let (f, listen, v2, all) = three_hosts_on_v1(
        app,
        "canary = 1\nbatch_size = 2\nmax_failures = 0\nmanual_promotion = true\n",
    );
    let all: Vec<&str> = all.iter().map(String::as_str).collect();

    // v2 goes out; while its canary (host 00) awaits promotion, host 02's cable is pulled: no
    // packet in or out, its open connections just stop answering, as when a VM is powered off.
    release(&f, app, &v2.image_ref());
    f.wait_rollout(app, Duration::from_secs(60), |r| {
        r["seq"] == 2 && state(r) == "awaiting-promotion"
    });
    f.host(all[2]).unplug();
    ok(f.slipway(0, &["rollout", "promote", app]));
    assert!(
        f.host(all[2]).get(listen).is_err(),
        "an unplugged host answers nothing"
    );
    // It vanished before its wave started, so it never took v2: left out as down, and with
    // max_failures = 0 the rollout still finishes.
    let r = f.wait_rollout(app, Duration::from_secs(90), |r| {
        r["seq"] == 2 && (state(r) == "done" || state(r) == "halted")
    });
    assert_eq!(state(&r), "done", "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["left_out"][all[2]], "down", "{r}");
    wait_bodies(&f, &[all[0], all[1]], listen, "flvanish v2");

    // Back on the network, it catches up with the fleet's live release by itself.
    f.host(all[2]).plug();
    wait_bodies(&f, &[all[2]], listen, "flvanish v2");
}
