//! A release that uses secrets reaches an agent that does not open secrets into containers
//! yet: the agent refuses it by name, the running release keeps serving, and the secret's
//! value is nowhere on the host.

use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::time::Duration;

const VALUE: &str = "plaintext-guard-7f3a";

#[test]
fn a_release_with_secrets_is_refused_and_the_live_one_keeps_serving() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("secret guard v1")
        .push(registry.addr(), "secweb", "v1")
        .unwrap();
    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-s", "{ role = \"web\" }");
    controller.start();
    let host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    let listen = free_port();
    let spec = |extra: &str| {
        let p = controller.path().join("app.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"secweb\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n[swap]\nbake = \"1s\"\n[rollout]\nselector = {{ role = \"web\" }}\n{extra}",
                v1.repository
            ),
        )
        .unwrap();
        p
    };
    let slipway = |args: &[&str]| controller.slipway(&admin, args);
    let image = format!("{}:v1", v1.repository);
    ok(slipway(&["app", "apply", "-f", spec("").to_str().unwrap()]));
    ok(slipway(&["release", "secweb", "--image", &image]));
    host.wait_for_body(listen, "secret guard v1", Duration::from_secs(60))
        .unwrap();

    let value = controller.path().join("value");
    std::fs::write(&value, VALUE).unwrap();
    ok(slipway(&[
        "secret",
        "set",
        "secweb",
        "db-password",
        "--file",
        value.to_str().unwrap(),
    ]));
    let with_secret = spec("[secrets]\nDB_PASSWORD = \"db-password\"\n");
    ok(slipway(&[
        "app",
        "apply",
        "-f",
        with_secret.to_str().unwrap(),
    ]));
    ok(slipway(&["release", "secweb", "--image", &image]));
    let mut last = String::new();
    let refused = wait_until(Duration::from_secs(60), || {
        last = host.status()["secweb"]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        last.contains("uses secrets")
    });
    assert!(
        refused.is_ok(),
        "last error: {last}\n{}",
        host.log_tail("agent.log", 30)
    );
    assert!(
        last.contains("secweb seq 2") && last.contains("db-password"),
        "{last}"
    );
    assert_eq!(get(listen).unwrap().1, "secret guard v1");
    assert_eq!(host.status()["secweb"]["live_seq"], 1);
    let found = std::process::Command::new("grep")
        .args(["-rl", VALUE])
        .arg(host.path())
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "plaintext on the host: {}",
        String::from_utf8_lossy(&found.stdout)
    );
}
