//! ACME against a real RFC 8555 server: Debian's `pebble`, started here with its own test CA
//! and pebble-challtestsrv as its DNS (every name -> 127.0.0.1), so the HTTP-01 and
//! TLS-ALPN-01 validations really connect to the proxy's loopback listeners.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use slipway_proto::{EdgeSpec, TlsSpec};
use slipway_proxy::{AcmeChallenge, AcmeConfig, EdgeConfig, Protocol, RouteSpec};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// pebble and its DNS, validating against the proxy's `http_port` and `https_port`.
struct Pebble {
    directory: String,
    ca: PathBuf,
    management: u16,
    _procs: Vec<Killed>,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16, https_port: u16) -> Pebble {
        assert!(
            Path::new("/usr/bin/pebble").exists(),
            "pebble is not installed: run deploy/install-deps"
        );
        // pebble's own HTTPS certificate, from a CA the proxy is told to trust.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_p.distinguished_name
            .push(rcgen::DnType::CommonName, "slipway test CA");
        let ca = ca_p.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf_p =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        leaf_p.is_ca = rcgen::IsCa::NoCa;
        leaf_p
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble");
        let issuer = rcgen::Issuer::new(ca_p, ca_key);
        let leaf = leaf_p.signed_by(&leaf_key, &issuer).unwrap();
        let ca_pem = dir.join("pebble-ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        std::fs::write(dir.join("pebble.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).unwrap();
        let (acme, management, dns, chall_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let cfg = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble.pem"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.join("pebble.json"), cfg.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let dns_srv = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
            ])
            .args([
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{chall_mgmt}"),
            ])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::from(log("challtestsrv.err")))
            .spawn()
            .expect("pebble-challtestsrv starts");
        let dns_srv = Killed(dns_srv);
        wait_port(chall_mgmt);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::from(log("pebble.err")))
            .spawn()
            .expect("pebble starts");
        let pebble = Killed(pebble);
        wait_port(acme);
        Pebble {
            directory: format!("https://127.0.0.1:{acme}/dir"),
            ca: ca_pem,
            management,
            _procs: vec![pebble, dns_srv],
        }
    }

    /// The root pebble issues under (it makes a new one each start), for curl to trust.
    fn issuing_root(&self, dir: &Path) -> PathBuf {
        let url = format!("https://127.0.0.1:{}/roots/0", self.management);
        let (code, body, _) = curl(&["--cacert", self.ca.to_str().unwrap(), &url]);
        assert_eq!(code, 200, "{body}");
        let p = dir.join("pebble-root.pem");
        std::fs::write(&p, body).unwrap();
        p
    }
}

fn acme_route(hosts: &[&str]) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tls: Some(TlsSpec {
                acme: true,
                ..TlsSpec::default()
            }),
            ..EdgeSpec::default()
        },
    }
}

fn https_ok(tls_port: u16, host: &str, ca: &Path) -> Option<String> {
    let url = format!("https://{host}:{tls_port}/whoami");
    let r = format!("{host}:{tls_port}:127.0.0.1");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--resolve", &r, "--cacert"])
        .arg(ca)
        .arg(&url)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_https(tls_port: u16, host: &str, ca: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = https_ok(tls_port, host, ca) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: no valid certificate served in time"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

async fn issue_with(challenge: AcmeChallenge) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = {
        let d = d.clone();
        tokio::task::spawn_blocking(move || Pebble::start(&d, http_port, https_port))
            .await
            .unwrap()
    };
    let acme_dir = d.join("acme");
    let edge = EdgeConfig {
        http_port,
        https_port,
        acme: Some(AcmeConfig {
            ca_root: Some(pebble.ca.clone()),
            challenge,
            ..AcmeConfig::new(&pebble.directory, &acme_dir)
        }),
        ..EdgeConfig::default()
    };
    let shop = Backend::start("shop").await;
    let proxy = Proxy::start_with(&d, edge.clone()).await;
    proxy
        .client
        .set_route("shop", &acme_route(&["shop.slipway.test"]), shop.upstream())
        .await
        .unwrap();
    let root = pebble.issuing_root(&d);
    let body = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || wait_https(https_port, "shop.slipway.test", &root))
            .await
            .unwrap()
    };
    assert_eq!(body, "shop /whoami");
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "certs/shop.slipway.test.pem",
        "certs/shop.slipway.test.key",
        "account.json",
    ] {
        let mode = std::fs::metadata(acme_dir.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let issued = std::fs::read(acme_dir.join("certs/shop.slipway.test.pem")).unwrap();
    proxy.stop().await;

    // Restart with the ACME server gone: the stored certificate serves at once, unchanged.
    drop(pebble);
    let proxy = Proxy::start_with(&d, edge.clone()).await;
    let served = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || https_ok(https_port, "shop.slipway.test", &root))
            .await
            .unwrap()
    };
    assert_eq!(
        served.as_deref(),
        Some("shop /whoami"),
        "served right after restart"
    );
    assert_eq!(
        std::fs::read(acme_dir.join("certs/shop.slipway.test.pem")).unwrap(),
        issued
    );

    // A host the (now unreachable) ACME server cannot issue for: the route is accepted, the
    // failure is reported naming the host, and the running app keeps serving.
    let blog = Backend::start("blog").await;
    proxy
        .client
        .set_route("blog", &acme_route(&["blog.slipway.test"]), blog.upstream())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        let routes = proxy.client.routes().await.unwrap();
        if let Some(e) = routes
            .iter()
            .find(|r| r.app == "blog")
            .and_then(|r| r.tls_error.clone())
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no ACME error reported: {routes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        err.contains("blog.slipway.test") && err.contains("app `blog`"),
        "{err}"
    );
    let still =
        tokio::task::spawn_blocking(move || https_ok(https_port, "shop.slipway.test", &root))
            .await
            .unwrap();
    assert_eq!(still.as_deref(), Some("shop /whoami"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_is_issued_stored_and_kept_across_restarts() {
    issue_with(AcmeChallenge::Http01).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_certificate_is_issued() {
    issue_with(AcmeChallenge::TlsAlpn01).await;
}
