//! Real images, end to end: images built from Debian packages by real builders (mmdebstrap,
//! umoci, skopeo; see `slipway_tests::debian_image`), deployed by `slipway-agent` with only
//! `name`, `image`, `listen` and `container_port` (plus a volume where data must persist).
//! The first run builds and caches the images (minutes; needs the Debian mirror).

use slipway_tests::debian_image::Recipe;
use slipway_tests::host::{free_port, get, wait_until, TestHost};
use slipway_tests::image::{busybox_layer, ImageBuilder};
use slipway_tests::lan::{ip, Lan};
use slipway_tests::registry::Registry;
use std::process::Command;
use std::time::Duration;

const NGINX: Recipe = Recipe {
    name: "nginx",
    // keyutils: the isolation probes run inside this image too; iputils-ping carries a file
    // capability (`security.capability`, cap_net_raw=p).
    packages: &["nginx-light", "keyutils", "iputils-ping"],
    hooks: &[],
    cmd: &["nginx", "-g", "daemon off;"],
    expose: &["80/tcp"],
    volumes: &[],
    stop_signal: Some("SIGQUIT"),
    user: None,
};

const POSTGRES: Recipe = Recipe {
    name: "postgres",
    packages: &["postgresql-15"],
    hooks: &[
        "echo \"listen_addresses = '*'\" >> \"$1\"/etc/postgresql/15/main/postgresql.conf",
        "echo 'host all all 0.0.0.0/0 trust' >> \"$1\"/etc/postgresql/15/main/pg_hba.conf",
        // /run is empty in an image: the server's socket and lock go to /tmp instead.
        "echo \"unix_socket_directories = '/tmp'\" >> \"$1\"/etc/postgresql/15/main/postgresql.conf",
    ],
    cmd: &[
        "/usr/lib/postgresql/15/bin/postgres",
        "-D",
        "/var/lib/postgresql/15/main",
        "-c",
        "config_file=/etc/postgresql/15/main/postgresql.conf",
    ],
    expose: &["5432/tcp"],
    volumes: &["/var/lib/postgresql/15/main"],
    stop_signal: Some("SIGINT"),
    user: Some("postgres"),
};

fn host() -> (TestHost, Registry) {
    let registry = Registry::start().expect("registry");
    let host = TestHost::start(registry.addr()).expect("host");
    (host, registry)
}

fn spec(host: &TestHost, text: &str) -> slipway_proto::AppSpec {
    slipway_proto::AppSpec::from_toml(&text.replace("REGISTRY", &host.registry))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `runc exec` in the running container of `app` (the agent's runc root): (exit code, output).
fn exec(host: &TestHost, app: &str, script: &str) -> (i32, String) {
    let id = host
        .runc_list()
        .into_iter()
        .find(|i| i.starts_with(&format!("{app}-")))
        .expect("a running container");
    let out = Command::new("runc")
        .arg("--root")
        .arg(host.path().join("runc"))
        .args(["exec", &id, "/bin/sh", "-c", script])
        .output()
        .expect("runc exec");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn wait_error(host: &TestHost, app: &str, needle: &str) -> String {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        last = host.status()[app]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_string();
        last.contains(needle)
    });
    assert!(
        ok.is_ok(),
        "no error naming `{needle}`; last: {last}\n{}",
        host.log_tail("agent.log", 30)
    );
    last
}

#[test]
fn nginx_as_debian_packages_it_serves_its_page_and_is_confined() {
    let (host, _reg) = host();
    let image = NGINX.push(&host.registry).expect("nginx image");
    let listen = free_port();
    let s = spec(&host, &format!("name = \"nginx\"\nimage = \"REGISTRY/nginx\"\nlisten = {listen}\ncontainer_port = 80\n"));
    host.release(&s, 1, &image).unwrap();
    // A debug-build agent takes a while to pull and unpack a Debian image.
    host.wait_for_body(listen, "Welcome to nginx!", Duration::from_secs(300))
        .unwrap();

    // Confined as Docker confines: no user namespaces, no keyrings, no mounts, no NET_RAW;
    // writes go to the container's own layer.
    for (probe, what) in [
        ("unshare -U true", "unshare -U"),
        ("keyctl add user probe data @s", "keyctl"),
        ("mkdir -p /mnt/p && mount -t tmpfs none /mnt/p", "mount"),
    ] {
        let (code, out) = exec(&host, "nginx", probe);
        assert_ne!(code, 0, "{what} was allowed: {out}");
        assert!(
            out.to_lowercase().contains("not permitted") || out.contains("denied"),
            "{what}: {out}"
        );
    }
    let (_, caps) = exec(&host, "nginx", "grep CapEff /proc/self/status");
    assert!(caps.contains("00000000a80405fb"), "{caps}");
    let (code, _) = exec(&host, "nginx", "echo x > /var/www/html/probe");
    assert_eq!(code, 0, "the root is writable by default");

    // The image's device nodes (mmdebstrap's /dev) were skipped and said so; its file
    // capability (Debian's ping: cap_net_raw+ep) is on the unpacked file, so the kernel
    // refuses to exec that ping in a container without NET_RAW, as it would anywhere; a copy
    // without the capability pings through ICMP datagram sockets (ping_group_range).
    let log = std::fs::read_to_string(host.path().join("agent.log")).unwrap();
    assert!(
        log.contains("skipped device nodes in the layer"),
        "{}",
        host.log_tail("agent.log", 40)
    );
    let ping = find_file(host.path(), "usr/bin/ping").expect("ping unpacked in the store");
    let cap = get_xattr(&ping, "security.capability");
    assert!(
        cap.as_ref().is_some_and(|c| c.len() >= 20),
        "{} has no file capability: {cap:?}",
        ping.display()
    );
    let (code, out) = exec(&host, "nginx", "ping -c 1 -W 5 127.0.0.1");
    assert_eq!(code, 126, "cap_net_raw+ep without NET_RAW: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let (code, out) = exec(
        &host,
        "nginx",
        "cp /usr/bin/ping /tmp/ping && /tmp/ping -c 1 -W 5 127.0.0.1",
    );
    assert_eq!(code, 0, "ping without NET_RAW: {out}");
    assert!(out.contains("1 received"), "{out}");

    // Bad input is refused with its name and reason; the running nginx keeps serving.
    let bad = spec(&host, &format!("name = \"nginx\"\nimage = \"REGISTRY/nginx\"\nlisten = {listen}\ncontainer_port = 80\nseccomp = \"{}/nope.json\"\n", host.path().display()));
    let broken = host.path().join("nope.json");
    std::fs::write(&broken, "{ not json").unwrap();
    host.release(&bad, 2, &image).unwrap();
    let e = wait_error(&host, "nginx", "seccomp");
    assert!(e.contains("nope.json") && e.contains("app nginx"), "{e}");
    assert_eq!(get(listen).unwrap().0, 200);
    let mut bad = s.clone();
    bad.volumes.push(slipway_proto::spec::Volume {
        name: Some("Web_Data".into()),
        host: None,
        container: "/data".into(),
        read_only: false,
    });
    host.release(&bad, 3, &image).unwrap();
    let e = wait_error(&host, "nginx", "Web_Data");
    assert!(e.contains("a-z"), "{e}");
    assert!(get(listen).unwrap().1.contains("Welcome to nginx!"));

    // With NET_RAW added back, Debian's ping runs as installed.
    let mut raw = s.clone();
    raw.cap_add = vec!["NET_RAW".into()];
    host.release(&raw, 4, &image).unwrap();
    wait_until(Duration::from_secs(120), || {
        let ids = host.runc_list();
        ids.len() == 1 && ids[0].starts_with("nginx-4-")
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{}",
            host.runc_list(),
            host.log_tail("agent.log", 30)
        )
    });
    let (code, out) = exec(&host, "nginx", "ping -c 1 -W 5 127.0.0.1");
    assert_eq!(code, 0, "cap_add NET_RAW: {out}");
    assert!(get(listen).unwrap().1.contains("Welcome to nginx!"));
}

fn psql(listen: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &listen.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map_err(|e| format!("psql: {e} (apt-get install -y postgresql-client)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn psql_retry(host: &TestHost, listen: u16, sql: &str) -> String {
    let mut last = String::new();
    for _ in 0..120 {
        match psql(listen, sql) {
            Ok(out) => return out,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "`{sql}` never succeeded: {last}\n{}",
        host.log_tail("agent.log", 40)
    );
}

#[test]
fn postgres_rows_survive_three_deploys_and_a_rollback_on_a_named_volume() {
    let (host, _reg) = host();
    let v1 = POSTGRES.push(&host.registry).expect("postgres image");
    let v2 = POSTGRES
        .push_variant(&host.registry, "v2")
        .expect("postgres image v2");
    assert_ne!(v1, v2);
    let listen = free_port();
    let text = format!("name = \"pg\"\nimage = \"REGISTRY/postgres\"\nlisten = {listen}\nprotocol = \"tcp\"\ncontainer_port = 5432\n[[volumes]]\nname = \"pgdata\"\ncontainer = \"/var/lib/postgresql/15/main\"\n");
    let s = spec(&host, &text);
    let mut rows = Vec::new();
    for (seq, image) in [(1, &v1), (2, &v1), (3, &v2), (4, &v1)] {
        host.release(&s, seq, image).unwrap();
        let wait = Duration::from_secs(if seq == 1 { 300 } else { 120 });
        wait_until(wait, || {
            host.status()["pg"]["live_seq"].as_u64() == Some(seq)
        })
        .unwrap_or_else(|_| {
            panic!(
                "seq {seq} never went live\n{}",
                host.log_tail("agent.log", 40)
            )
        });
        if seq == 1 {
            psql_retry(
                &host,
                listen,
                "CREATE TABLE IF NOT EXISTS deploys (seq int)",
            );
        }
        if seq < 4 {
            psql_retry(
                &host,
                listen,
                &format!("INSERT INTO deploys VALUES ({seq})"),
            );
            rows.push(seq.to_string());
        }
        let got = psql_retry(
            &host,
            listen,
            "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM deploys",
        );
        assert_eq!(got, rows.join(","), "after seq {seq}");
    }
    // The rollback (seq 4) runs the older digest on the same data.
    assert_eq!(
        host.status()["pg"]["live_image"].as_str(),
        Some(v1.as_str())
    );
    assert_eq!(host.runc_list().len(), 1, "one writer on the volume");

    let volume = |args: &[&str]| {
        Command::new(slipway_tests::bins::bin("slipway-agent"))
            .arg("volume")
            .args(args)
            .arg("--config")
            .arg(host.agent_config())
            .output()
            .unwrap()
    };
    let ls = String::from_utf8_lossy(&volume(&["ls"]).stdout).to_string();
    assert!(ls.contains("pgdata") && ls.contains("pg-4-"), "{ls}");
    let rm = volume(&["rm", "pgdata"]);
    assert!(!rm.status.success(), "removed while in use");
    assert!(String::from_utf8_lossy(&rm.stderr).contains("in use"));
    // Removing the app keeps the volume; only `volume rm` deletes it.
    host.remove_release("pg");
    wait_until(Duration::from_secs(30), || host.runc_list().is_empty()).unwrap();
    assert!(String::from_utf8_lossy(&volume(&["ls"]).stdout).contains("pgdata"));
    let data = host.path().join("state/volumes/pgdata/_data/PG_VERSION");
    assert!(data.is_file(), "{} missing", data.display());
    // The last discard finishes its record just after runc forgets the container.
    wait_until(Duration::from_secs(20), || {
        volume(&["rm", "pgdata"]).status.success()
    })
    .expect("volume rm once no container mounts it");
    assert!(!data.exists());
}

/// A service on another test host whose network has no route back to the container subnet:
/// only egress NAT lets the container reach it. The name is resolved by a DNS server on that
/// host, set as the containers' resolver in agent.toml.
#[test]
fn a_container_resolves_names_and_reaches_a_host_with_no_route_back_through_nat() {
    let lan = Lan::create().expect("lan");
    let svc = lan.host().expect("service host");
    ip(&["-n", &svc.ns, "route", "del", "default"]).unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the other host\n").unwrap();
    let _httpd = Child(
        svc.command("busybox")
            .args(["httpd", "-f", "-p", &format!("{}:8080", svc.ip), "-h"])
            .arg(www.path())
            .spawn()
            .unwrap(),
    );
    let _dns = Child(
        svc.command(slipway_tests::bins::bin("slipway-test-dns"))
            .arg(format!("{}:53", svc.ip))
            .arg(format!("svc.slipway.test={}", svc.ip))
            .spawn()
            .unwrap(),
    );
    // busybox's nslookup reads /etc/resolv.conf itself and nc fetches from the address it
    // found (the static busybox's wget needs glibc's NSS libraries, which the image lacks).
    let script = "mkdir -p /www; echo waiting > /www/index.html; \
        while true; do \
          a=$(busybox nslookup svc.slipway.test | busybox awk '/^Name:/ {n=1} n && /^Address/ {print $2; exit}'); \
          [ -n \"$a\" ] && printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $a 8080 > /tmp/page \
            && grep other /tmp/page > /tmp/body && cat /tmp/body > /www/index.html; \
          sleep 1; \
        done & exec httpd -f -p 80 -h /www";
    let image = ImageBuilder::new()
        .layer(busybox_layer())
        .cmd(&["/bin/sh", "-c", script])
        .expose("80/tcp")
        .build();
    let registry = Registry::start().expect("registry");
    let dns = format!("[runtime.dns]\nservers = [\"{}\"]\n", svc.ip);
    for (masquerade, want) in [(true, "hello from the other host"), (false, "waiting")] {
        let key = slipway_proto::SigningKey::generate().unwrap();
        let toml = format!("masquerade = {masquerade}\n{dns}");
        let host = TestHost::start_with(registry.addr(), key, &toml).expect("host");
        let pushed = image
            .push(&host.registry, "natapp", "latest")
            .unwrap()
            .image_ref();
        let listen = free_port();
        let s = spec(&host, &format!("name = \"natapp\"\nimage = \"REGISTRY/natapp\"\nlisten = {listen}\ncontainer_port = 80\n"));
        host.release(&s, 1, &pushed).unwrap();
        if let Err(e) = host.wait_for_body(listen, want, Duration::from_secs(30)) {
            let (_, diag) = exec(&host, "natapp", &format!("cat /etc/resolv.conf; busybox nslookup svc.slipway.test; ip route; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 8080; echo rc=$?", svc.ip));
            let curl = Command::new("curl")
                .args(["-sS", "-m", "2", &format!("http://{}:8080/", svc.ip)])
                .output()
                .unwrap();
            panic!("{e}\n--- inside the container:\n{diag}\n--- from the host: {curl:?}");
        }
        if !masquerade {
            // Without NAT the replies have no way back: the page never arrives.
            std::thread::sleep(Duration::from_secs(6));
            assert_eq!(get(listen).unwrap().1, want);
        }
    }
}

#[test]
fn an_image_of_128_layers_starts() {
    let (host, _reg) = host();
    let mut b = ImageBuilder::new().layer(busybox_layer());
    for i in 1..127 {
        let path = format!("layers/{i:03}");
        b = b.layer_from_files(&[(path.as_str(), format!("{i}").as_bytes())]);
    }
    let image = b
        .layer_from_files(&[("www/index.html", b"one hundred and twenty-eight layers")])
        .cmd(&["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"])
        .build();
    let pushed = image
        .push(&host.registry, "many", "latest")
        .unwrap()
        .image_ref();
    let listen = free_port();
    let s = spec(
        &host,
        &format!(
            "name = \"many\"\nimage = \"REGISTRY/many\"\nlisten = {listen}\ncontainer_port = 80\n"
        ),
    );
    host.release(&s, 1, &pushed).unwrap();
    host.wait_for_body(
        listen,
        "one hundred and twenty-eight layers",
        Duration::from_secs(120),
    )
    .unwrap();
    let (_, n) = exec(&host, "many", "ls /layers | grep -c .");
    assert_eq!(n.trim(), "126");
}

/// The first regular file under `root` whose path ends with `suffix` (a layer in the store).
fn find_file(root: &std::path::Path, suffix: &str) -> Option<std::path::PathBuf> {
    let out = Command::new("find")
        .arg(root)
        .args(["-type", "f", "-path"])
        .arg(format!("*/{suffix}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(Into::into)
}

/// The value of xattr `name` on `path` (not following symlinks).
fn get_xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and the buffer is as long as we say.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
