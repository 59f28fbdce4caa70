//! Controller to host, end to end: `slipway` asks the controller for a release by tag, the
//! controller resolves and signs it, the agent long-polls it, deploys it blue-green, and
//! reports back; with the controller stopped the host keeps serving, even across an agent
//! restart.

use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::time::Duration;

#[test]
fn release_through_the_controller_reaches_the_host_and_survives_its_absence() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("controller v1")
        .push(registry.addr(), "ctlweb", "v1")
        .unwrap();
    let v2 = busybox_httpd_image("controller v2")
        .push(registry.addr(), "ctlweb", "v2")
        .unwrap();

    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-a", "{ role = \"web\" }");
    controller.start();
    let mut host = TestHost::start_with(registry.addr(), key, &agent).unwrap();

    let listen = free_port();
    let app_toml = controller.path().join("app.toml");
    std::fs::write(
        &app_toml,
        format!(
            "name = \"ctlweb\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\nstop_grace = \"2s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n[rollout]\nselector = {{ role = \"web\" }}\n",
            v1.repository
        ),
    )
    .unwrap();
    let slipway = |args: &[&str]| controller.slipway(&admin, args);
    ok(slipway(&["app", "apply", "-f", app_toml.to_str().unwrap()]));
    ok(slipway(&[
        "release",
        "ctlweb",
        "--image",
        &format!("{}:v1", v1.repository),
    ]));
    host.wait_for_body(listen, "controller v1", Duration::from_secs(60))
        .unwrap();

    ok(slipway(&[
        "release",
        "ctlweb",
        "--image",
        &format!("{}:v2", v2.repository),
    ]));
    host.wait_for_body(listen, "controller v2", Duration::from_secs(60))
        .unwrap();
    // The agent reported the phases; the controller shows this host live on seq 2.
    wait_until(Duration::from_secs(15), || {
        let out = slipway(&["--json", "status", "ctlweb"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.as_array().is_some_and(|rows| {
            rows.iter()
                .any(|r| r["host"] == "host-a" && r["seq"] == 2 && r["phase"] == "live")
        })
    })
    .expect("controller status shows host-a live on seq 2");

    // Controller down: the host keeps serving, and keeps serving across an agent restart.
    controller.stop();
    assert_eq!(get(listen).unwrap().1, "controller v2");
    host.kill_agent();
    host.start_agent().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(listen).unwrap().1, "controller v2");
    assert_eq!(host.runc_list().len(), 1);

    // Back up: a rollback is a new, higher seq pointing at v1's digest.
    controller.start();
    ok(controller.slipway(&admin, &["rollback", "ctlweb", "--to-seq", "1"]));
    host.wait_for_body(listen, "controller v1", Duration::from_secs(60))
        .unwrap();
    let st = host.status();
    assert_eq!(st["ctlweb"]["live_seq"], 3);
    assert_eq!(st["ctlweb"]["live_image"].as_str().unwrap(), v1.image_ref());
}
