//! `slipway logs` end to end, through a real controller to real agents on two hosts (each a
//! network namespace of its own, see `tests/src/fleet.rs`) running a busybox container: lines
//! from every host with their prefix, `--tail`, `-f` (and its upload ending with the CLI),
//! which tokens may read, and a host that is down.

use slipway_tests::bins::bin;
use slipway_tests::fleet::{ok, slipway, Fleet};
use slipway_tests::host::{free_port, wait_until};
use slipway_tests::image::{busybox_layer, ImageBuilder, TarBuilder};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const FAST: &str = "[health]\ndeadline = \"5s\"\n[swap]\nbake = \"1s\"\ndrain_timeout = \"2s\"\n";
/// Short long-polls and silence deadline: a killed agent counts as down within seconds.
const CONTROLLER: &str =
    "long_poll_max_wait = \"1s\"\n[rollout]\nsilent_after = \"4s\"\ntick = \"200ms\"\n";

/// Prints a fixed stdout at start, then a numbered `tick` on stderr every second, and serves
/// HTTP (for the health check).
fn chatty_image(version: &str) -> slipway_tests::image::Image {
    let script = format!(
        "echo 'hello from {version}'; for i in 0 1 2 3 4; do echo \"line $i\"; done; \
         ( n=0; while :; do n=$((n+1)); echo \"tick $n\" >&2; sleep 1; done ) & \
         exec /bin/busybox httpd -f -p 80 -h /www"
    );
    ImageBuilder::new()
        .layer(busybox_layer())
        .layer_from_tar(TarBuilder::new().dir("www", 0o755).file(
            "www/index.html",
            version.as_bytes(),
            0o644,
        ))
        .cmd(&["/bin/sh", "-c", &script])
        .expose("80/tcp")
        .build()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// The stdout lines of `host` in prefixed output.
fn lines_of<'a>(out: &'a str, host: &str) -> Vec<&'a str> {
    let prefix = format!("[{host}] ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect()
}

#[test]
fn slipway_logs_reads_every_host_through_the_controller() {
    let app = "logsweb";
    let mut f = Fleet::start(1, CONTROLLER);
    let listen = free_port();
    let image = chatty_image("web")
        .push(f.registry.addr(), app, "v1")
        .unwrap();
    f.add_hosts(app, 2, &format!("{{ fleet = \"{app}\" }}"), 0);
    f.apply(
        app,
        &format!(
            "name = \"{app}\"\nimage = \"{}\"\nlisten = {listen}\ncontainer_port = 80\n{FAST}\
             [rollout]\nselector = {{ fleet = \"{app}\" }}\n",
            image.repository
        ),
    );
    f.wait_registered();
    ok(f.slipway(0, &["release", app, "--image", &image.image_ref()]));
    f.wait_rollout(app, Duration::from_secs(90), |r| r["state"] == "done");
    let (h0, h1) = (format!("{app}-00"), format!("{app}-01"));
    let url = f.controllers[0].url.clone();

    // Every host, each line prefixed with its host; the containers' stderr marked as such.
    let mut out = f.slipway(0, &["logs", app]);
    wait_until(Duration::from_secs(10), || {
        out = f.slipway(0, &["logs", app]);
        text(&out.stderr).contains(&format!("[{h1} stderr] tick"))
            && text(&out.stderr).contains(&format!("[{h0} stderr] tick"))
    })
    .unwrap_or_else(|_| panic!("no stderr from both hosts: {}", text(&out.stderr)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let want = [
        "hello from web",
        "line 0",
        "line 1",
        "line 2",
        "line 3",
        "line 4",
    ];
    for h in [&h0, &h1] {
        assert_eq!(lines_of(&stdout, h), want, "{h}:\n{stdout}");
    }

    // --tail 2: exactly the last two lines of each stream on each host.
    let out = f.slipway(0, &["logs", app, "--tail", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    for h in [&h0, &h1] {
        assert_eq!(lines_of(&stdout, h), ["line 3", "line 4"], "{h}:\n{stdout}");
        let ticks = text(&out.stderr)
            .lines()
            .filter(|l| l.starts_with(&format!("[{h} stderr] tick")))
            .count();
        assert_eq!(ticks, 2, "{}", text(&out.stderr));
    }

    // --since: only what was written since then (the stdout lines came at start).
    std::thread::sleep(Duration::from_secs(3));
    let out = f.slipway(0, &["logs", app, "--host", &h0, "--since", "2s"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "stdout was written at start");
    let ticks = text(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("tick "))
        .count();
    assert!((1..=4).contains(&ticks), "{}", text(&out.stderr));
    let out = f.slipway(
        0,
        &[
            "logs",
            app,
            "--host",
            &h0,
            "--since",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), want);

    // A read-only token may read (one host: lines as they are); an agent token may not.
    let ro = f.controllers[0].token("logs-reader", "read-only", None);
    let out = slipway(&url, &ro, &["logs", app, "--host", &h0, "--tail", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "line 4\n");
    let agent = std::fs::read_to_string(f.host(&h0).dir.path().join("agent.token")).unwrap();
    let out = slipway(&url, agent.trim(), &["logs", app]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("may not read logs") && err.contains("operator token") && err.contains("403"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // -f: a line the container writes after the command started shows; once the CLI is
    // killed, the agent's upload ends.
    let mut follow = Command::new(bin("slipway"))
        .args(["logs", app, "--host", &h0, "-f", "--tail", "0"])
        .env("SLIPWAY_URL", &url)
        .env("SLIPWAY_TOKEN", &f.admin)
        .env("HOME", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = follow.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(15));
    assert!(
        first.as_deref().is_ok_and(|l| l.starts_with("tick ")),
        "no new line followed: {first:?}\n{}",
        f.host(&h0).log_tail("agent.log", 20)
    );
    let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(second.starts_with("tick "), "{second}");
    let _ = follow.kill();
    let _ = follow.wait();
    wait_until(Duration::from_secs(20), || {
        f.host(&h0)
            .log_tail("agent.log", 200)
            .contains("log reader left; upload ended")
    })
    .unwrap_or_else(|_| {
        panic!(
            "the agent's upload outlived its reader:\n{}",
            f.host(&h0).log_tail("agent.log", 20)
        )
    });

    // -f moves on to the new container when a new release starts, and says so.
    let v2 = chatty_image("v2")
        .push(f.registry.addr(), app, "v2")
        .unwrap();
    let mut follow = Command::new(bin("slipway"))
        .args(["logs", app, "-f", "--tail", "0"])
        .env("SLIPWAY_URL", &url)
        .env("SLIPWAY_TOKEN", &f.admin)
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(follow.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(follow.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    ok(f.slipway(0, &["release", app, "--image", &v2.image_ref()]));
    let (mut noted, mut hello) = (false, false);
    let t = std::time::Instant::now();
    let mut seen = Vec::new();
    while !(noted && hello) && t.elapsed() < Duration::from_secs(60) {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            noted |= l.starts_with(&format!("[{h0}] now following release 2"));
            hello |= l == format!("[{h0}] hello from v2");
            seen.push(l);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        noted && hello,
        "the follow never moved to release 2: {seen:#?}"
    );
    f.wait_rollout(app, Duration::from_secs(60), |r| {
        r["state"] == "done" && r["seq"] == 2
    });
    let want: Vec<String> = want
        .iter()
        .map(|l| l.replace("from web", "from v2"))
        .collect();

    // A host that is down says so, with when it was last seen; the other one still prints.
    f.host_mut(&h1).kill_agent();
    let mut out = f.slipway(0, &["logs", app]);
    wait_until(Duration::from_secs(20), || {
        out = f.slipway(0, &["logs", app]);
        text(&out.stderr).contains("is down")
    })
    .unwrap_or_else(|_| {
        panic!(
            "the killed host never showed as down: {}",
            text(&out.stderr)
        )
    });
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("[{h1}] error: host {h1} is down: last seen "))
            && err.contains(" ago, at "),
        "{err}"
    );
    assert!(
        !out.status.success(),
        "a host gave no logs: the exit code says so"
    );
    assert!(err.contains(&format!("no logs from {h1}")), "{err}");
    assert_eq!(lines_of(&text(&out.stdout), &h0), want);
    drop(f);
}
