//! GitOps end to end: a commit to a real git repository (bare origin + work clone made here)
//! reaches a host as a new container serving traffic. The controller (a real
//! `slipway-controller serve` process) syncs the repository; a signed GitHub webhook makes it
//! sync at once; the release on the host carries the commit and its author.

use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "e2e webhook secret";

/// git with only repo-level config (the user's and the system's are ignored).
fn git(dir: &Path, args: &[&str]) -> String {
    ok(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap())
    .trim()
    .to_string()
}

fn commit(work: &Path, author: &str, message: &str) -> String {
    git(work, &["config", "user.name", author]);
    git(
        work,
        &[
            "config",
            "user.email",
            &format!("{}@example.com", author.to_lowercase()),
        ],
    );
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// A signed GitHub push webhook over plain HTTP/1.1; returns the status code.
fn webhook(port: u16, delivery: &str) -> u16 {
    use std::io::{Read, Write};
    let body = br#"{"ref":"refs/heads/main"}"#;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let sig = hex::encode(ring::hmac::sign(&key, body).as_ref());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: sha256={sig}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad reply {reply:?}"))
}

#[test]
fn a_git_commit_becomes_a_new_container_serving_traffic() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("gitops v1")
        .push(registry.addr(), "gitweb", "v1")
        .unwrap();
    let v2 = busybox_httpd_image("gitops v2")
        .push(registry.addr(), "gitweb", "v2")
        .unwrap();

    // The desired-state repository: apps/gitweb/{app.toml,image}.
    let repo = tempfile::tempdir().unwrap();
    let origin = repo.path().join("origin.git");
    let work = repo.path().join("work");
    git(
        repo.path(),
        &["init", "-q", "--bare", "-b", "main", "origin.git"],
    );
    git(repo.path(), &["init", "-q", "-b", "main", "work"]);
    git(
        &work,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    let listen = free_port();
    std::fs::create_dir_all(work.join("apps/gitweb")).unwrap();
    std::fs::write(
        work.join("apps/gitweb/app.toml"),
        format!(
            "name = \"gitweb\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n\
             stop_grace = \"2s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n\
             [rollout]\nselector = {{ role = \"web\" }}\n",
            v1.repository
        ),
    )
    .unwrap();
    std::fs::write(work.join("apps/gitweb/image"), "v1\n").unwrap();
    commit(&work, "Alice", "gitweb v1");

    // Controller syncing it: hourly polls, so v2 below can only come from the webhook.
    let secret = repo.path().join("github.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let (mut controller, key) = Controller::prepare(&format!(
        "[gitops]\nurl = \"{}\"\nbranch = \"main\"\npath = \"apps\"\npoll_interval = \"1h\"\n\
         github_secret_file = \"{}\"\n",
        origin.display(),
        secret.display()
    ));
    let admin = controller.token("admin", "admin", None);
    let agent = controller.agent_section("host-g", "{ role = \"web\" }");
    controller.start();
    let port = controller.port;
    let host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    // The first sync (at start) released v1 from the repository.
    host.wait_for_body(listen, "gitops v1", Duration::from_secs(60))
        .unwrap();

    // Bob's commit moves the image to v2; the webhook says "sync now".
    std::fs::write(work.join("apps/gitweb/image"), "v2\n").unwrap();
    let c2 = commit(&work, "Bob", "gitweb v2");
    assert_eq!(webhook(port, "e2e-delivery-1"), 202);
    host.wait_for_body(listen, "gitops v2", Duration::from_secs(60))
        .unwrap();
    // v2 answers from its switch on; it is the live release once its bake window passed.
    wait_until(Duration::from_secs(30), || {
        host.status()["gitweb"]["live_seq"] == 2
    })
    .expect("v2 becomes the live release after its bake");
    let st = host.status();
    assert_eq!(st["gitweb"]["live_image"].as_str().unwrap(), v2.image_ref());
    // After the bake window the v1 container is discarded.
    wait_until(Duration::from_secs(30), || host.runc_list().len() == 1)
        .expect("the v1 container is discarded after the bake window");

    // The release says which commit and who.
    let slipway = |args: &[&str]| controller.slipway(&admin, args);
    let rels: serde_json::Value =
        serde_json::from_str(&ok(slipway(&["--json", "history", "gitweb"]))).unwrap();
    let env = &rels[1]["envelope"];
    let payload = base64_decode(env["payload"].as_str().unwrap());
    let release: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(release["annotations"]["slipway.git.commit"], c2);
    assert_eq!(
        release["annotations"]["slipway.git.author"],
        "Bob <bob@example.com>"
    );
    assert_eq!(rels[1]["created_by"], "gitops");
    // `slipway status` names the synced commit.
    let text = ok(slipway(&["status", "gitweb"]));
    assert!(
        text.contains(&c2[..12]) && text.contains("released"),
        "{text}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
