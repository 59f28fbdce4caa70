//! Blue-green on one host, end to end on real parts: a real registry, `slipway-agent proxy`
//! and `slipway-agent run` as separate processes, runc containers in CNI network namespaces,
//! and a client that keeps requesting during swaps and counts every failure.

use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::load::Load;
use slipway_tests::registry::Registry;
use std::time::Duration;

/// busybox httpd as PID 1 ignores SIGTERM: a short grace keeps discards quick.
const FAST_BAKE: &str = "stop_grace = \"1s\"\n[swap]\ndrain_timeout = \"5s\"\nbake = \"1s\"\n";

struct Bed {
    host: TestHost,
    _registry: Registry,
    listen: u16,
}

fn bed() -> Bed {
    let registry = Registry::start().expect("registry");
    let host = TestHost::start(registry.addr()).expect("host");
    Bed {
        host,
        _registry: registry,
        listen: free_port(),
    }
}

fn push(bed: &Bed, app: &str, text: &str) -> String {
    busybox_httpd_image(text)
        .push(&bed.host.registry, app, "latest")
        .expect("push")
        .image_ref()
}

fn app_status(bed: &Bed, app: &str) -> serde_json::Value {
    bed.host.status()[app].clone()
}

#[test]
fn first_deploy_then_swap_under_load_fails_nothing() {
    let bed = bed();
    let spec = bed.host.spec("bgswap", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgswap", "Hello from v1");
    let v2 = push(&bed, "bgswap", "Hello from v2");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "Hello from v1", Duration::from_secs(60))
        .unwrap();
    assert_eq!(bed.host.runc_list().len(), 1, "one container for v1");

    let load = Load::start(TestHost::addr(bed.listen), 4);
    std::thread::sleep(Duration::from_millis(300));
    bed.host.release(&spec, 2, &v2).unwrap();
    let took = bed
        .host
        .wait_for_body(bed.listen, "Hello from v2", Duration::from_secs(30))
        .unwrap();
    // Past the bake window the old container is discarded.
    wait_until(Duration::from_secs(20), || bed.host.runc_list().len() == 1)
        .expect("old container discarded after bake");
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish();
    eprintln!(
        "swap seen after {took:?}; load: {} ok, {} failed, {} retried, bodies {:?}",
        report.ok, report.failed, report.retried, report.bodies
    );
    assert_eq!(
        report.failed, 0,
        "failed requests during the swap: {:?}",
        report.errors
    );
    assert_eq!(
        report.retried, 0,
        "connections closed under clients during the swap"
    );
    assert!(report.bodies.get("Hello from v1").copied().unwrap_or(0) > 0);
    assert!(report.bodies.get("Hello from v2").copied().unwrap_or(0) > 0);
    // Keep-alive clients moved: the last answers are all v2.
    assert_eq!(get(bed.listen).unwrap().1, "Hello from v2");
    let list = bed.host.runc_list();
    assert!(list[0].starts_with("bgswap-2-"), "{list:?}");
    wait_until(Duration::from_secs(10), || {
        app_status(&bed, "bgswap")["phase"] == "live"
    })
    .expect("phase live after bake");
    let st = app_status(&bed, "bgswap");
    assert_eq!(st["live_seq"], 2);
    assert_eq!(st["history"][0]["outcome"], "live");
}

#[test]
fn bad_signature_and_replay_change_nothing() {
    let bed = bed();
    let spec = bed.host.spec("bgbad", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgbad", "v1 here");
    let v2 = push(&bed, "bgbad", "v2 here");
    bed.host.release(&spec, 5, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "v1 here", Duration::from_secs(60))
        .unwrap();
    let before = bed.host.runc_list();

    // Tampered: a validly signed v2 release whose signature is then altered.
    let mut env = bed.host.sign(&spec, 6, &v2, Duration::from_secs(600));
    let mut sig = env.signatures[0].sig.clone().into_bytes();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    env.signatures[0].sig = String::from_utf8(sig).unwrap();
    bed.host
        .write_release("bgbad", env.to_json().as_bytes())
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        app_status(&bed, "bgbad")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("bad signature"))
    })
    .expect("bad signature reported in status");
    assert_eq!(get(bed.listen).unwrap().1, "v1 here");
    assert_eq!(bed.host.runc_list(), before);

    // Replay: an older seq, validly signed.
    bed.host.release(&spec, 4, &v2).unwrap();
    wait_until(Duration::from_secs(10), || {
        app_status(&bed, "bgbad")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("seq must be greater than 5"))
    })
    .expect("replay reported in status");
    assert_eq!(get(bed.listen).unwrap().1, "v1 here");
    assert_eq!(bed.host.runc_list(), before);
    assert_eq!(app_status(&bed, "bgbad")["live_seq"], 5);
}

#[test]
fn unhealthy_release_never_takes_traffic() {
    let bed = bed();
    let spec = bed.host.spec("bgsick", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgsick", "healthy v1");
    let v2 = push(&bed, "bgsick", "sick v2");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "healthy v1", Duration::from_secs(60))
        .unwrap();

    let load = Load::start(TestHost::addr(bed.listen), 2);
    let sick = bed.host.spec(
        "bgsick",
        bed.listen,
        "[health]\npath = \"/missing\"\ndeadline = \"3s\"\n[swap]\nbake = \"1s\"\n",
    );
    bed.host.release(&sick, 2, &v2).unwrap();
    wait_until(Duration::from_secs(30), || {
        app_status(&bed, "bgsick")["failed_seq"] == 2
    })
    .expect("failure recorded");
    let report = load.finish();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(
        !report.bodies.contains_key("sick v2"),
        "unhealthy release served traffic"
    );
    assert_eq!(get(bed.listen).unwrap().1, "healthy v1");
    let list = bed.host.runc_list();
    assert_eq!(list.len(), 1, "new container discarded: {list:?}");
    assert!(list[0].starts_with("bgsick-1-"));
    let st = app_status(&bed, "bgsick");
    let err = st["history"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("last health check: GET"),
        "last health-check output recorded: {err}"
    );
    assert_eq!(st["live_seq"], 1);
}

#[test]
fn crash_after_switch_is_rolled_back_by_bake() {
    let bed = bed();
    let spec = bed.host.spec("bgcrash", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgcrash", "steady v1");
    let v2 = push(&bed, "bgcrash", "flaky v2");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "steady v1", Duration::from_secs(60))
        .unwrap();

    // v2 serves for a moment, then its web server dies while the container lives on.
    let flaky = bed.host.spec(
        "bgcrash",
        bed.listen,
        "command = [\"/bin/sh\", \"-c\", \"httpd -f -p 80 -h /www & sleep 2; kill $!; sleep 3600\"]\n[swap]\ndrain_timeout = \"5s\"\nbake = \"6s\"\n",
    );
    bed.host.release(&flaky, 2, &v2).unwrap();
    bed.host
        .wait_for_body(bed.listen, "flaky v2", Duration::from_secs(30))
        .unwrap();
    wait_until(Duration::from_secs(20), || {
        app_status(&bed, "bgcrash")["history"][0]["outcome"] == "rolled-back"
    })
    .expect("bake failure rolled back");
    assert_eq!(get(bed.listen).unwrap().1, "steady v1");
    wait_until(Duration::from_secs(15), || bed.host.runc_list().len() == 1)
        .expect("flaky container discarded");
    assert!(bed.host.runc_list()[0].starts_with("bgcrash-1-"));
    let st = app_status(&bed, "bgcrash");
    assert_eq!(st["live_seq"], 1);
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("rolled back"),
        "{st}"
    );
}

#[test]
fn agent_killed_mid_deploy_and_restarted_never_drops_traffic() {
    let mut bed = bed();
    let spec = bed.host.spec("bgkill", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgkill", "before kill");
    let v2 = push(&bed, "bgkill", "after kill");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "before kill", Duration::from_secs(60))
        .unwrap();

    let load = Load::start(TestHost::addr(bed.listen), 2);
    // SIGKILL with nothing in flight: no request may fail.
    bed.host.kill_agent();
    std::thread::sleep(Duration::from_millis(500));
    bed.host.start_agent().unwrap();

    // v2 starts slowly (httpd after 2 s), so the kill lands in the health-check phase.
    let slow = bed.host.spec(
        "bgkill",
        bed.listen,
        "command = [\"/bin/sh\", \"-c\", \"sleep 2; exec httpd -f -p 80 -h /www\"]\n[swap]\ndrain_timeout = \"5s\"\nbake = \"1s\"\n",
    );
    bed.host.release(&slow, 2, &v2).unwrap();
    wait_until(Duration::from_secs(30), || {
        app_status(&bed, "bgkill")["phase"] == "health-checking"
    })
    .expect("reached health-checking");
    bed.host.kill_agent();
    assert_eq!(
        get(bed.listen).unwrap().1,
        "before kill",
        "old container keeps serving with the agent dead"
    );
    bed.host.start_agent().unwrap();
    bed.host
        .wait_for_body(bed.listen, "after kill", Duration::from_secs(30))
        .unwrap();

    // Kill again during bake; after restart exactly one container remains and it is v2.
    bed.host.kill_agent();
    bed.host.start_agent().unwrap();
    wait_until(Duration::from_secs(20), || bed.host.runc_list().len() == 1)
        .expect("one container after recovery");
    std::thread::sleep(Duration::from_millis(300));
    let report = load.finish();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(get(bed.listen).unwrap().1, "after kill");
    assert!(bed.host.runc_list()[0].starts_with("bgkill-2-"));
}

#[test]
fn proxy_restart_restores_routes_and_removal_leaves_nothing() {
    let mut bed = bed();
    let spec = bed.host.spec("bgproxy", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bgproxy", "routed v1");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "routed v1", Duration::from_secs(60))
        .unwrap();

    bed.host.kill_proxy();
    bed.host.start_proxy().unwrap();
    bed.host
        .wait_for_body(bed.listen, "routed v1", Duration::from_secs(10))
        .expect("route restored from the proxy's state file");

    assert_eq!(
        bed.host.netns_of("bgproxy").len(),
        1,
        "one netns for the one container"
    );
    bed.host.remove_release("bgproxy");
    wait_until(Duration::from_secs(30), || bed.host.runc_list().is_empty())
        .expect("containers discarded on removal");
    wait_until(Duration::from_secs(5), || get(bed.listen).is_err())
        .expect("listener closed on removal");
    wait_until(Duration::from_secs(10), || {
        bed.host.netns_of("bgproxy").is_empty()
    })
    .expect("netns removed with the container");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&bed.host.path().to_string_lossy().to_string()),
        "no mounts left under the host dir"
    );
}

#[test]
fn newer_release_supersedes_one_in_flight() {
    let bed = bed();
    let v1 = push(&bed, "bgsuper", "super v1");
    let v2 = push(&bed, "bgsuper", "super v2");
    let v3 = push(&bed, "bgsuper", "super v3");
    let spec = bed.host.spec("bgsuper", bed.listen, FAST_BAKE);
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "super v1", Duration::from_secs(60))
        .unwrap();
    // v2 never gets healthy in time for anyone to care: v3 arrives while it is checked.
    let slow = bed.host.spec("bgsuper", bed.listen, "command = [\"/bin/sh\", \"-c\", \"sleep 30; exec httpd -f -p 80 -h /www\"]\n[health]\ndeadline = \"60s\"\n");
    bed.host.release(&slow, 2, &v2).unwrap();
    wait_until(Duration::from_secs(30), || {
        app_status(&bed, "bgsuper")["phase"] == "health-checking"
    })
    .expect("v2 health-checking");
    bed.host.release(&spec, 3, &v3).unwrap();
    bed.host
        .wait_for_body(bed.listen, "super v3", Duration::from_secs(30))
        .unwrap();
    wait_until(Duration::from_secs(20), || bed.host.runc_list().len() == 1)
        .expect("v1 and v2 discarded");
    assert!(bed.host.runc_list()[0].starts_with("bgsuper-3-"));
    let st = app_status(&bed, "bgsuper");
    let outcomes: Vec<_> = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["seq"].as_u64().unwrap(),
                h["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(outcomes.contains(&(2, "superseded".into())), "{outcomes:?}");
}

#[test]
fn server_errors_during_bake_switch_back_at_once() {
    use slipway_tests::image::{busybox_layer, ImageBuilder, TarBuilder};
    let bed = bed();
    let spec = bed.host.spec("bg5xx", bed.listen, FAST_BAKE);
    let v1 = push(&bed, "bg5xx", "calm v1");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "calm v1", Duration::from_secs(60))
        .unwrap();

    // v2 passes its health check (/health.html) but answers 500 on / (an index CGI).
    let cgi = b"#!/bin/sh\necho 'Status: 500 Internal Server Error'\necho 'Content-Type: text/plain'\necho\necho boom\n";
    let www = TarBuilder::new()
        .dir("www", 0o755)
        .file("www/health.html", b"ok", 0o644)
        .dir("www/cgi-bin", 0o755)
        .file("www/cgi-bin/index.cgi", cgi, 0o755);
    let v2 = ImageBuilder::new()
        .layer(busybox_layer())
        .layer_from_tar(www)
        .cmd(&["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"])
        .build()
        .push(&bed.host.registry, "bg5xx", "v2")
        .unwrap()
        .image_ref();
    let erring = bed.host.spec(
        "bg5xx",
        bed.listen,
        "stop_grace = \"1s\"\n[health]\npath = \"/health.html\"\n[swap]\ndrain_timeout = \"5s\"\nbake = \"20s\"\nmax_error_rate = 0.05\n",
    );
    let load = Load::start(TestHost::addr(bed.listen), 2);
    bed.host.release(&erring, 2, &v2).unwrap();
    wait_until(Duration::from_secs(40), || {
        app_status(&bed, "bg5xx")["history"][0]["outcome"] == "rolled-back"
    })
    .expect("5xx rate during bake rolled back");
    let report = load.finish();
    assert!(
        report.errors.iter().any(|e| e.contains("HTTP 500")),
        "v2 did take traffic: {:?}",
        report.errors
    );
    assert_eq!(get(bed.listen).unwrap().1, "calm v1");
    let st = app_status(&bed, "bg5xx");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("5xx"),
        "{st}"
    );
    assert_eq!(st["live_seq"], 1);
    wait_until(Duration::from_secs(15), || bed.host.runc_list().len() == 1).expect("v2 discarded");
}

#[test]
fn a_newer_release_does_not_wait_out_the_replaced_containers_stop_grace() {
    // busybox httpd ignores SIGTERM, so each replaced container takes its whole 20 s grace
    // to stop. A release made right after a swap must go live well before that.
    let bed = bed();
    let extra = "stop_grace = \"20s\"\n[swap]\ndrain_timeout = \"2s\"\nbake = \"300ms\"\n";
    let spec = bed.host.spec("bggrace", bed.listen, extra);
    let v1 = push(&bed, "bggrace", "grace v1");
    let v2 = push(&bed, "bggrace", "grace v2");
    let v3 = push(&bed, "bggrace", "grace v3");
    bed.host.release(&spec, 1, &v1).unwrap();
    bed.host
        .wait_for_body(bed.listen, "grace v1", Duration::from_secs(60))
        .unwrap();

    let load = Load::start(TestHost::addr(bed.listen), 2);
    bed.host.release(&spec, 2, &v2).unwrap();
    bed.host
        .wait_for_body(bed.listen, "grace v2", Duration::from_secs(30))
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        app_status(&bed, "bggrace")["live_seq"] == 2
    })
    .expect("v2 live after its bake");
    bed.host.release(&spec, 3, &v3).unwrap();
    let took = bed
        .host
        .wait_for_body(bed.listen, "grace v3", Duration::from_secs(30))
        .unwrap();
    assert!(
        took < Duration::from_secs(10),
        "v3 took {took:?}: it waited for v1's container to stop"
    );
    // Both replaced containers are discarded once their grace is over, v3 alone remains.
    wait_until(Duration::from_secs(60), || bed.host.runc_list().len() == 1)
        .expect("replaced containers discarded after their grace");
    assert!(bed.host.runc_list()[0].starts_with("bggrace-3-"));
    let report = load.finish();
    assert_eq!(report.failed, 0, "failed requests: {:?}", report.errors);
    assert_eq!(get(bed.listen).unwrap().1, "grace v3");
}
