//! The controller's dashboard at `/ui/` in a real browser (headless chromium): a login with an
//! admin token shows a real rollout (app, release, waves of hosts coloured by phase, hosts,
//! events) and its buttons steer it; a read-only login has no buttons; a revoked token sends
//! the page back to the login form. Screenshots go to `target/test-artifacts/`.

use slipway_tests::browser::{artifact, Browser};
use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, wait_until, TestHost};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::Registry;
use std::process::Command;
use std::time::Duration;

const APP: &str = "dashweb";
const WAIT: Duration = Duration::from_secs(30);

/// The rollout as `slipway --json rollout` shows it.
fn rollout(controller: &Controller, token: &str) -> serde_json::Value {
    serde_json::from_str(&ok(controller.slipway(token, &["--json", "rollout", APP]))).unwrap()
}

fn log_in(b: &mut Browser, url: &str, token: &str) {
    b.goto(&format!("{url}/ui/")).unwrap();
    b.wait_for("location.pathname === '/ui/login'", WAIT)
        .unwrap();
    b.eval(&format!(
        "document.getElementById('token').value = {}; document.getElementById('login-form').submit()",
        serde_json::Value::from(token)
    ))
    .unwrap();
}

#[test]
fn dashboard_shows_a_real_rollout_and_only_admins_steer_it() {
    let registry = Registry::start().unwrap();
    let v1 = busybox_httpd_image("dashboard v1")
        .push(registry.addr(), APP, "v1")
        .unwrap();
    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let viewer = controller.token("viewer", "read-only", None);
    let agent = controller.agent_section("host-a", "{ role = \"web\" }");
    controller.start();
    let host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    // A second host that registers but runs no agent: the wave after the canary waits for
    // promotion, so the buttons have something to act on.
    let reg = Command::new("curl")
        .args(["-fsS", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-H", &format!("authorization: Bearer {admin}")])
        .args(["-d", r#"{"labels":{"role":"web"}}"#])
        .arg(format!("{}/v1/hosts/host-z/register", controller.url))
        .output()
        .unwrap();
    ok(reg);

    let listen = free_port();
    let app_toml = controller.path().join("app.toml");
    std::fs::write(
        &app_toml,
        format!(
            "name = \"{APP}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\nstop_grace = \"2s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"5s\"\n[rollout]\nselector = {{ role = \"web\" }}\ncanary = 1\nbatch_size = 1\nmanual_promotion = true\n",
            v1.repository
        ),
    )
    .unwrap();
    ok(controller.slipway(&admin, &["app", "apply", "-f", app_toml.to_str().unwrap()]));
    ok(controller.slipway(
        &admin,
        &["release", APP, "--image", &format!("{}:v1", v1.repository)],
    ));
    if let Err(e) = host.wait_for_body(listen, "dashboard v1", Duration::from_secs(60)) {
        panic!("{e:#}\n--- controller log:\n{}", controller.log_tail(40));
    }
    wait_until(WAIT, || {
        rollout(&controller, &admin)["state"] == "awaiting-promotion"
    })
    .expect("the canary goes live and the rollout waits for promotion");

    let mut b = Browser::start().unwrap();
    let url = controller.url.clone();

    // No session: the dashboard sends the browser to the login form; a bad token stays there.
    log_in(&mut b, &url, "swt_not-a-token");
    b.wait_for(
        "document.getElementById('login-error')?.textContent.includes('unknown or revoked token')",
        WAIT,
    )
    .unwrap();

    // Admin: the app, its release, the waves of hosts by phase, the hosts and the events.
    log_in(&mut b, &url, &admin);
    b.wait_for("document.body.dataset.loaded === '1'", WAIT)
        .unwrap();
    b.wait_for(
        &format!(
            "document.querySelector('.rollout[data-app={APP}][data-seq=\"1\"][data-state=awaiting-promotion]') \
             && document.querySelector('.rollout .wave[data-wave=\"1\"] .host[data-host=host-a][data-phase=live]') \
             && document.querySelector('.rollout .wave[data-wave=\"2\"] .host[data-host=host-z]') \
             && document.querySelector('#events li[data-kind=\"host.phase\"]')"
        ),
        WAIT,
    )
    .unwrap();
    let row = b
        .eval(&format!(
            "document.querySelector('#apps tr[data-app={APP}]').innerText"
        ))
        .unwrap();
    let row = row.as_str().unwrap();
    assert!(row.contains("seq 1"), "{row}");
    assert!(row.contains("sha256:"), "{row}");
    assert!(row.contains("awaiting-promotion"), "{row}");
    let hosts = b
        .eval("document.querySelector('#hosts tbody').innerText")
        .unwrap();
    let hosts = hosts.as_str().unwrap();
    assert!(
        hosts.contains("host-a") && hosts.contains("role=web"),
        "{hosts}"
    );
    assert!(hosts.contains("host-z"), "{hosts}");
    for kind in ["release.created", "wave.started", "host.phase"] {
        let n = b
            .eval(&format!(
                "document.querySelectorAll('#events li[data-kind=\"{kind}\"]').length"
            ))
            .unwrap();
        assert!(n.as_u64().unwrap() >= 1, "no {kind} event in the timeline");
    }
    let gitops = b
        .eval("document.getElementById('gitops').innerText")
        .unwrap();
    assert!(
        gitops.as_str().unwrap().contains("not configured"),
        "{gitops}"
    );
    b.screenshot(&artifact("dashboard-admin.png")).unwrap();

    // The buttons call the rollout actions; the API shows the effect and the page follows.
    b.eval(&format!(
        "document.querySelector('button[data-action=promote][data-app={APP}]').click()"
    ))
    .unwrap();
    wait_until(WAIT, || rollout(&controller, &admin)["started"] == 2)
        .expect("promote started the second wave");
    b.wait_for(
        "document.querySelector('#events li[data-kind=\"rollout.promoted\"]')",
        WAIT,
    )
    .unwrap();
    b.eval(&format!(
        "document.querySelector('button[data-action=pause][data-app={APP}]').click()"
    ))
    .unwrap();
    wait_until(WAIT, || rollout(&controller, &admin)["state"] == "paused")
        .expect("pause paused the rollout");
    b.wait_for(
        &format!("document.querySelector('.rollout[data-app={APP}][data-state=paused]')"),
        WAIT,
    )
    .unwrap();
    b.eval(&format!(
        "window.confirm = () => true; document.querySelector('button[data-action=abort][data-app={APP}]').click()"
    ))
    .unwrap();
    wait_until(WAIT, || rollout(&controller, &admin)["state"] == "halted")
        .expect("abort halted the rollout");
    b.screenshot(&artifact("dashboard-admin-aborted.png"))
        .unwrap();

    // CSRF: the session cookie alone (no X-Slipway-UI header) opens nothing.
    let status = b
        .eval("fetch('/v1/apps', {credentials: 'same-origin'}).then(r => r.status)")
        .unwrap();
    assert_eq!(status, 401);

    // Read-only: the same page without buttons.
    b.eval("document.getElementById('logout').click()").unwrap();
    b.wait_for("location.pathname === '/ui/login'", WAIT)
        .unwrap();
    log_in(&mut b, &url, &viewer);
    b.wait_for(
        &format!(
            "document.body.dataset.loaded === '1' && document.body.dataset.role === 'read-only' \
             && document.querySelector('.rollout[data-app={APP}] .host[data-host=host-a]')"
        ),
        WAIT,
    )
    .unwrap();
    let buttons = b
        .eval("document.querySelectorAll('button[data-action]').length")
        .unwrap();
    assert_eq!(buttons, 0, "a read-only login shows no rollout buttons");
    b.screenshot(&artifact("dashboard-read-only.png")).unwrap();

    // The token is revoked: the open page goes back to the login form, and stays there.
    ok(controller.slipway(&admin, &["token", "revoke", "viewer"]));
    b.wait_for("location.pathname === '/ui/login'", WAIT)
        .unwrap();
    b.goto(&format!("{url}/ui/")).unwrap();
    b.wait_for("location.pathname === '/ui/login'", WAIT)
        .unwrap();
    assert!(rollout(&controller, &admin)["state"] == "halted");
}
