//! Controller to host, end to end: `slipway` asks the controller for a release by tag, the
//! controller resolves and signs it, the agent long-polls it, deploys it blue-green, and
//! reports back; with the controller stopped the host keeps serving, even across an agent
//! restart.

use slipway_proto::SigningKey;
use slipway_tests::bins::bin;
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

struct Controller {
    child: Option<Child>,
    config: std::path::PathBuf,
    url: String,
}

impl Controller {
    fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        self.child = Some(
            Command::new(bin("slipway-controller"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .stderr(log)
                .spawn()
                .expect("slipway-controller"),
        );
        let url = self.url.clone();
        wait_until(Duration::from_secs(20), || {
            let addr = url.trim_start_matches("http://").to_string();
            std::net::TcpStream::connect(addr).is_ok()
        })
        .expect("controller listening");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn token(config: &Path, name: &str, role: &str, host: Option<&str>) -> String {
    let mut cmd = Command::new(bin("slipway-controller"));
    cmd.args(["token-create", "--name", name, "--role", role, "--config"])
        .arg(config);
    if let Some(h) = host {
        cmd.args(["--host", h]);
    }
    ok(cmd.output().unwrap()).trim().to_string()
}

#[test]
fn release_through_the_controller_reaches_the_host_and_survives_its_absence() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("controller v1")
        .push(registry.addr(), "ctlweb", "v1")
        .unwrap();
    let v2 = busybox_httpd_image("controller v2")
        .push(registry.addr(), "ctlweb", "v2")
        .unwrap();

    let cdir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let key_path = cdir.path().join("release.key");
    std::fs::write(&key_path, key.to_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let config = cdir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nsigning_key = \"{}\"\n",
            cdir.path().join("data").display(),
            key_path.display()
        ),
    )
    .unwrap();
    let admin = token(&config, "admin", "admin", None);
    let agent_token = token(&config, "host-a", "agent", Some("host-a"));
    let token_file = cdir.path().join("agent.token");
    std::fs::write(&token_file, &agent_token).unwrap();
    let mut controller = Controller {
        child: None,
        config: config.clone(),
        url: format!("http://127.0.0.1:{port}"),
    };
    controller.start();

    let cache = cdir.path().join("agent-cache");
    let host = TestHost::start_with(
        registry.addr(),
        key,
        &format!(
            "\n[controller]\nurl = \"{}\"\nhost_id = \"host-a\"\nlabels = {{ role = \"web\" }}\ntoken_file = \"{}\"\ncache_dir = \"{}\"\n",
            controller.url,
            token_file.display(),
            cache.display()
        ),
    )
    .unwrap();
    let mut host = host;
    let listen = free_port();
    let app_toml = cdir.path().join("app.toml");
    std::fs::write(
        &app_toml,
        format!(
            "name = \"ctlweb\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n[rollout]\nselector = {{ role = \"web\" }}\n",
            v1.repository
        ),
    )
    .unwrap();
    let url = controller.url.clone();
    let slipway = |args: &[&str]| {
        Command::new(bin("slipway"))
            .args(args)
            .env("SLIPWAY_URL", &url)
            .env("SLIPWAY_TOKEN", &admin)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    };
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
    ok(slipway(&["rollback", "ctlweb", "--to-seq", "1"]));
    host.wait_for_body(listen, "controller v1", Duration::from_secs(60))
        .unwrap();
    let st = host.status();
    assert_eq!(st["ctlweb"]["live_seq"], 3);
    assert_eq!(st["ctlweb"]["live_image"].as_str().unwrap(), v1.image_ref());
    // Clean removal is driven by the host's drop (release files are not used here).
    drop(controller);
}
