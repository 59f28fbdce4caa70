//! Sealed secrets end to end, on a real controller, registry, proxy, agent and runc: the
//! container gets its env value and read-only file; the plaintext is nowhere else (database,
//! API answers of every role, release envelopes, the host's disk, logs); a rotation rolls out
//! and a rollback brings the old value back; a tampered or forged sealed secret is refused by
//! name and the live container keeps serving.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use slipway_proto::seal::{seal, HostSecretKey, SealContext, SealedSecret};
use slipway_tests::bins::bin;
use slipway_tests::controller::{ok, Controller};
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::{busybox_httpd_image, http};
use slipway_tests::registry::Registry;
use slipway_tests::tamper::TamperProxy;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const APP: &str = "secweb";
const MIN: Duration = Duration::from_secs(60);

/// The app's command publishes what it sees: hashes of its env value and its file (never the
/// values, so no log or page holds them), the file's mode and whether it can be written.
const SCRIPT: &str = r#"b=/bin/busybox
mkdir -p /tmp/www
if echo x 2>/dev/null >> /run/secrets/tls.key; then w=writable; else w=read-only; fi
{
echo "env $(printf %s "$DB_PASSWORD" | $b sha256sum)"
echo "file $($b sha256sum < /run/secrets/tls.key)"
echo "mode $($b stat -c %a /run/secrets/tls.key)"
echo "file-is $w"
} > /tmp/www/index.html
exec $b httpd -f -p 80 -h /tmp/www"#;

fn sha(v: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, v.as_bytes()))
}

/// A high-entropy value, different on every run.
fn value(tag: &str) -> String {
    let mut b = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    format!("{tag}-{}", hex::encode(b))
}

fn spec_file(controller: &Controller, image: &str, listen: u16) -> PathBuf {
    let p = controller.path().join("app.toml");
    let text = format!(
        "name = \"{APP}\"\nimage = \"{image}\"\nlisten = {listen}\ncontainer_port = 80\n\
         command = [\"/bin/sh\", \"-c\", '''{SCRIPT}''']\n\
         [swap]\nbake = \"1s\"\n[rollout]\nselector = {{ role = \"web\" }}\n\
         [secrets]\nDB_PASSWORD = \"db-password\"\n\
         [[secret_files]]\nname = \"tls-key\"\npath = \"/run/secrets/tls.key\"\nmode = 0o400\n"
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// `slipway secret set APP NAME` with the value on stdin (never in a file or argv).
fn secret_set(controller: &Controller, token: &str, name: &str, value: &str) {
    let mut child = Command::new(bin("slipway"))
        .args(["secret", "set", APP, name])
        .env("SLIPWAY_URL", &controller.url)
        .env("SLIPWAY_TOKEN", token)
        .env("HOME", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap());
}

/// The plaintext in the forms a leak would take: as is, base64 and hex.
fn forms(values: &[&str]) -> Vec<(String, Vec<u8>)> {
    values
        .iter()
        .flat_map(|v| {
            [
                (format!("`{v}`"), v.as_bytes().to_vec()),
                (format!("base64 of `{v}`"), B64.encode(v).into_bytes()),
                (format!("hex of `{v}`"), hex::encode(v).into_bytes()),
            ]
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Panics when `bytes` (or, for JSON, any base64 string inside it decoded, such as a
/// release envelope's payload) holds a value in any of its forms.
fn assert_no_plaintext(what: &str, bytes: &[u8], values: &[&str]) {
    for (form, needle) in forms(values) {
        assert!(!contains(bytes, &needle), "{form} found in {what}");
    }
    fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let mut all = Vec::new();
        strings(&json, &mut all);
        for decoded in all.iter().filter_map(|s| B64.decode(s).ok()) {
            for v in values {
                assert!(
                    !contains(&decoded, v.as_bytes()),
                    "`{v}` found base64-encoded in {what}"
                );
            }
        }
    }
}

/// Every regular file under `root` on its own file system: mounts below it (a container's
/// secrets tmpfs, its overlay root) are RAM or the image, not the host's disk.
fn files_on_disk(root: &Path) -> Vec<PathBuf> {
    let dev = std::fs::metadata(root).unwrap().dev();
    let (mut out, mut stack) = (Vec::new(), vec![root.to_path_buf()]);
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out
}

fn assert_no_plaintext_under(root: &Path, values: &[&str]) -> usize {
    let files = files_on_disk(root);
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert_no_plaintext(&f.display().to_string(), &bytes, values);
    }
    files.len()
}

fn api_get(controller: &Controller, token: &str, path: &str) -> http::Response {
    http::request(
        &controller.addr,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .unwrap()
}

/// The mount point of a container's secrets tmpfs on this host.
fn secrets_dir(host: &TestHost, container: &str) -> PathBuf {
    host.path().join("secrets").join(container)
}

fn is_tmpfs(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&dir) && l.contains(" tmpfs "))
}

fn live_container(host: &TestHost) -> String {
    host.status()[APP]["live_container"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_serving(host: &TestHost, listen: u16, env: &str) {
    host.wait_for_body(listen, &format!("env {}", sha(env)), MIN)
        .unwrap();
}

#[test]
fn secrets_reach_the_container_roll_out_roll_back_and_are_nowhere_else() {
    let registry = Registry::start().unwrap();
    let img = busybox_httpd_image("unused")
        .push(registry.addr(), APP, "v1")
        .unwrap();
    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let reader = controller.token("reader", "read-only", None);
    let agent = controller.agent_section("host-s", "{ role = \"web\" }");
    let agent_token = std::fs::read_to_string(controller.path().join("host-s.token")).unwrap();
    controller.start();
    let mut host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    let listen = free_port();
    let (env1, env2, file1) = (value("env-one"), value("env-two"), value("file-one"));

    let spec = spec_file(&controller, &img.repository, listen);
    ok(controller.slipway(&admin, &["app", "apply", "-f", spec.to_str().unwrap()]));
    secret_set(&controller, &admin, "db-password", &env1);
    secret_set(&controller, &admin, "tls-key", &file1);
    let image = format!("{}:v1", img.repository);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    wait_serving(&host, listen, &env1);

    // What the app sees: the env value and the file, owner read-only, not writable.
    let (code, page) = get(listen).unwrap();
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(&format!("file {}", sha(&file1))), "{page}");
    assert!(page.contains("mode 400"), "{page}");
    assert!(page.contains("file-is read-only"), "{page}");

    // On the host: a tmpfs of the container's own holds them.
    let first = live_container(&host);
    let tmpfs = secrets_dir(&host, &first);
    assert!(is_tmpfs(&tmpfs), "no tmpfs for {first}");
    // There, and only there (the disk walk below skips it, being another file system):
    // config.json with the env value, and the file.
    let config = std::fs::read(tmpfs.join("config.json")).unwrap();
    assert!(
        contains(&config, env1.as_bytes()),
        "env value not in the tmpfs config.json"
    );
    let container_dir = host.path().join("state/containers").join(&first);
    assert!(container_dir.is_dir() && !container_dir.join("config.json").exists());
    let files: Vec<PathBuf> = std::fs::read_dir(tmpfs.join("files"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), file1);

    // `slipway-agent status`: names and versions only.
    assert_eq!(
        host.status()[APP]["secrets"],
        serde_json::json!({"db-password": 1, "tls-key": 1})
    );
    let text = Command::new(bin("slipway-agent"))
        .args(["status", "--config"])
        .arg(host.agent_config())
        .output()
        .unwrap();
    let text = ok(text);
    assert!(
        text.contains("secrets db-password v1, tls-key v1"),
        "{text}"
    );

    // Rotation: a new value is a new release, rolled out; the old container's tmpfs goes
    // with it.
    secret_set(&controller, &admin, "db-password", &env2);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    wait_serving(&host, listen, &env2);
    wait_until(MIN, || !secrets_dir(&host, &first).exists()).unwrap_or_else(|_| {
        panic!("secrets of {first} outlived it");
    });
    assert_eq!(host.status()[APP]["secrets"]["db-password"], 2);

    // Rollback: the earlier release whole, its pins too, so the old value comes back.
    ok(controller.slipway(&admin, &["rollback", APP, "--to-seq", "1"]));
    wait_serving(&host, listen, &env1);
    assert_eq!(host.status()[APP]["secrets"]["db-password"], 1);

    // An agent restart adopts the container with its tmpfs; nothing is reopened or lost.
    let live = live_container(&host);
    host.kill_agent();
    host.start_agent().unwrap();
    let log = host.path().join("agent.log");
    wait_until(MIN, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.matches("adopted containers from the previous run")
            .count()
            >= 2
    })
    .unwrap();
    assert!(is_tmpfs(&secrets_dir(&host, &live)), "tmpfs of {live} lost");
    let (code, page) = get(listen).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains(&sha(&env1)), "{page}");
    // The containers of seq 1 and 2 are discarded, their tmpfs with them.
    let mut dirs = Vec::new();
    let only_live = wait_until(MIN, || {
        dirs = std::fs::read_dir(host.path().join("secrets"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        dirs == [live.clone()]
    });
    assert!(only_live.is_ok(), "secrets dirs: {dirs:?}, live {live}");

    // The plaintext is nowhere: not in any API answer, for any role...
    let values = [env1.as_str(), env2.as_str(), file1.as_str()];
    let mut paths: Vec<String> = [
        "/v1/apps",
        "/v1/apps/secweb",
        "/v1/apps/secweb/releases",
        "/v1/apps/secweb/rollout",
        "/v1/apps/secweb/secrets",
        "/v1/hosts",
        "/v1/status",
        "/v1/audit",
        "/v1/events?limit=500",
        "/v1/tokens",
        "/metrics",
        "/v1/hosts/host-s/desired",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.extend((1..=3).map(|seq| format!("/v1/apps/secweb/releases/{seq}")));
    let mut answered = 0;
    for (role, token) in [
        ("admin", &admin),
        ("read-only", &reader),
        ("agent", &agent_token),
    ] {
        for p in &paths {
            let r = api_get(&controller, token.trim(), p);
            answered += usize::from(r.status == 200);
            assert_no_plaintext(&format!("GET {p} as {role}"), &r.body, &values);
        }
    }
    assert!(answered > 20, "only {answered} answers to check");
    // ... in no release envelope (their payloads were decoded above): a signed release
    // pins the secret's name, version and digest only.
    let rel = api_get(&controller, &admin, "/v1/apps/secweb/releases/2");
    assert_eq!(rel.status, 200, "{}", rel.text());
    let json: serde_json::Value = serde_json::from_slice(&rel.body).unwrap();
    let payload = json["envelope"]["payload"]
        .as_str()
        .or(json["payload"].as_str())
        .unwrap_or_else(|| panic!("no envelope payload in {json}"));
    let body = String::from_utf8(B64.decode(payload).unwrap()).unwrap();
    assert!(body.contains("db-password"), "{body}");
    assert!(body.contains(&format!("sha256:{}", sha(&env2))), "{body}");
    // ... not in the controller's database, config or log, nor anywhere on the host's disk
    // (state dir, runc root, bundles, desired-set cache, agent and proxy logs).
    let n = assert_no_plaintext_under(controller.path(), &values);
    assert!(n > 3, "{n} controller files");
    let n = assert_no_plaintext_under(host.path(), &values);
    assert!(n > 10, "{n} host files");
    for log in ["agent.log", "proxy.log"] {
        let bytes = std::fs::read(host.path().join(log)).unwrap();
        assert!(!bytes.is_empty(), "{log} is empty");
        assert_no_plaintext(log, &bytes, &values);
    }
    let bytes = std::fs::read(controller.log_path()).unwrap();
    assert_no_plaintext("controller log", &bytes, &values);
}

/// The host's public key, from its private key in the agent's controller cache dir.
fn host_public_key(controller: &Controller, host: &str) -> slipway_proto::seal::HostPublicKey {
    let path = controller
        .path()
        .join(format!("{host}-cache"))
        .join("host-secret.key");
    let raw = B64
        .decode(std::fs::read_to_string(path).unwrap().trim())
        .unwrap();
    HostSecretKey::from_bytes(&raw).unwrap().public()
}

fn wait_refused(host: &TestHost, seq: u64) -> String {
    let mut last = String::new();
    let refused = wait_until(MIN, || {
        let st = host.status();
        last = st[APP]["last_error"].as_str().unwrap_or("").to_string();
        st[APP]["failed_seq"] == seq
    });
    assert!(
        refused.is_ok(),
        "seq {seq} not refused; last error: {last}\n{}",
        host.log_tail("agent.log", 30)
    );
    last
}

#[test]
fn a_tampered_or_forged_sealed_secret_is_refused_and_the_live_container_keeps_serving() {
    let registry = Registry::start().unwrap();
    let img = busybox_httpd_image("unused")
        .push(registry.addr(), APP, "v1")
        .unwrap();
    let (mut controller, key) = Controller::prepare("");
    let admin = controller.token("admin", "admin", None);
    let proxy = TamperProxy::start(&controller.addr);
    let agent = controller
        .agent_section("host-t", "{ role = \"web\" }")
        .replace(&controller.url, &proxy.url);
    controller.start();
    let host = TestHost::start_with(registry.addr(), key, &agent).unwrap();
    let listen = free_port();
    let (env1, env2, env3) = (value("env-one"), value("env-two"), value("env-three"));
    let file1 = value("file-one");
    let spec = spec_file(&controller, &img.repository, listen);
    ok(controller.slipway(&admin, &["app", "apply", "-f", spec.to_str().unwrap()]));
    secret_set(&controller, &admin, "db-password", &env1);
    secret_set(&controller, &admin, "tls-key", &file1);
    let image = format!("{}:v1", img.repository);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    wait_serving(&host, listen, &env1);

    // Bytes of the sealed ciphertext flipped on the wire: it does not open.
    proxy.set_hook(Some(Box::new(|set| {
        let Some(ct) = set.pointer_mut("/secrets/secweb/db-password/sealed/ct") else {
            return;
        };
        let mut raw = B64.decode(ct.as_str().unwrap()).unwrap();
        raw[0] ^= 0x55;
        *ct = serde_json::Value::String(B64.encode(raw));
    })));
    secret_set(&controller, &admin, "db-password", &env2);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    // Refused with `parts` in its error, while seq 1 keeps serving the first value.
    let refused_and_kept = |seq: u64, parts: &[&str]| {
        let why = wait_refused(&host, seq);
        for part in parts {
            assert!(why.contains(part), "`{part}` not in: {why}");
        }
        let (code, page) = get(listen).unwrap();
        assert_eq!(code, 200);
        assert!(page.contains(&sha(&env1)), "{page}");
        assert_eq!(host.status()[APP]["live_seq"], 1);
    };
    refused_and_kept(
        2,
        &[
            "release secweb seq 2",
            "`db-password` v2",
            "does not open",
            "tampered",
            "running container is kept",
        ],
    );
    // The controller hears why.
    let mut status = String::new();
    let heard = wait_until(MIN, || {
        status = api_get(&controller, &admin, "/v1/status?app=secweb").text();
        status.contains("does not open") && status.contains("db-password")
    });
    assert!(heard.is_ok(), "{status}");

    // Another value sealed properly to this host's public key (anyone can): it opens, but
    // does not match the digest the signed release pins.
    let public = host_public_key(&controller, "host-t");
    proxy.set_hook(Some(Box::new(move |set| {
        let Some(entry) = set.pointer_mut("/secrets/secweb/db-password") else {
            return;
        };
        let version = entry["version"].as_u64().unwrap();
        let ctx = SealContext {
            app: APP,
            name: "db-password",
            version,
            host: "host-t",
        };
        let forged: SealedSecret = seal(&public, &ctx, b"forged-by-a-man-in-the-middle").unwrap();
        entry["sealed"] = serde_json::to_value(forged).unwrap();
    })));
    secret_set(&controller, &admin, "db-password", &env3);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    refused_and_kept(
        3,
        &[
            "release secweb seq 3",
            "`db-password` v3",
            "does not match the digest",
            "running container is kept",
        ],
    );

    // Untouched again, the next release goes out with the newest value.
    proxy.set_hook(None);
    ok(controller.slipway(&admin, &["release", APP, "--image", &image]));
    wait_serving(&host, listen, &env3);
    assert_eq!(host.status()[APP]["live_seq"], 4);
    let values = [env1.as_str(), env2.as_str(), env3.as_str(), file1.as_str()];
    assert_no_plaintext_under(host.path(), &values);
}
