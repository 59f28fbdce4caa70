//! TLS on the shared HTTPS listener, checked with curl: a certificate per host by SNI, HTTP
//! to HTTPS redirect, HSTS, HTTP/2 by ALPN, certificate files hot-reloaded, bad certificates
//! refused naming the host while running routes keep serving.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use slipway_proto::{EdgeSpec, TlsSpec};
use slipway_proxy::{Protocol, RouteSpec};

/// A self-signed certificate for `names` (valid from yesterday for `days`), written as PEM
/// files; curl trusts it with `--cacert cert.pem`.
fn cert(dir: &Path, stem: &str, names: &[&str], days: i64) -> (PathBuf, PathBuf) {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |secs: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs as u64);
    p.not_before = at(now - 86400 - if days < 0 { 86400 * 30 } else { 0 });
    p.not_after = at(now + days * 86400);
    p.is_ca = rcgen::IsCa::NoCa;
    let key = rcgen::KeyPair::generate().unwrap();
    let c = p.self_signed(&key).unwrap();
    let (cp, kp) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cp, c.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    (cp, kp)
}

fn tls_route(hosts: &[&str], cert: &Path, key: &Path, hsts: Option<Duration>) -> RouteSpec {
    RouteSpec {
        listen: 0,
        protocol: Protocol::Http,
        edge: EdgeSpec {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            tls: Some(TlsSpec {
                cert: Some(cert.to_owned()),
                key: Some(key.to_owned()),
                acme: false,
            }),
            hsts,
            ..EdgeSpec::default()
        },
    }
}

fn https(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> (u16, String, String) {
    let url = format!("https://{host}:{}{path}", addr.port());
    let r = resolve(host, addr);
    let ca = ca.to_str().unwrap();
    let mut args = vec!["--resolve", &r, "--cacert", ca];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// curl's exit code when the TLS handshake or verification fails (none is 0).
fn curl_fails(args: &[&str]) -> bool {
    !std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null"])
        .args(args)
        .status()
        .unwrap()
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_by_sni_redirect_hsts_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (shop_c, shop_k) = cert(d, "shop", &["shop.example.com", "*.shop.example.com"], 30);
    let (blog_c, blog_k) = cert(d, "blog", &["blog.example.com"], 30);
    let proxy = Proxy::start(d).await;
    let (shop, blog) = (Backend::start("shop").await, Backend::start("blog").await);
    let c = &proxy.client;
    let year = Duration::from_secs(365 * 86400);
    c.set_route(
        "shop",
        &tls_route(
            &["shop.example.com", "*.shop.example.com"],
            &shop_c,
            &shop_k,
            Some(year),
        ),
        shop.upstream(),
    )
    .await
    .unwrap();
    c.set_route(
        "blog",
        &tls_route(&["blog.example.com"], &blog_c, &blog_k, None),
        blog.upstream(),
    )
    .await
    .unwrap();
    let edge = c.edge().await.unwrap();
    let (http, tls) = (edge.http.unwrap(), edge.https.unwrap());
    tokio::task::spawn_blocking(move || {
        // Each host gets its own certificate: curl verifies it against that host's CA only.
        let (code, body, headers) = https(tls, "shop.example.com", "/whoami", &shop_c, &[]);
        assert_eq!((code, body.as_str()), (200, "shop /whoami"));
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{headers}"
        );
        let (code, body, _) = https(tls, "eu.shop.example.com", "/whoami", &shop_c, &[]);
        assert_eq!((code, body.as_str()), (200, "shop /whoami"));
        let (code, body, headers) = https(tls, "blog.example.com", "/whoami", &blog_c, &[]);
        assert_eq!((code, body.as_str()), (200, "blog /whoami"));
        assert!(
            !headers
                .to_ascii_lowercase()
                .contains("strict-transport-security"),
            "{headers}"
        );
        // The blog certificate is not served for shop (curl refuses it).
        let r = resolve("shop.example.com", tls);
        let url = format!("https://shop.example.com:{}/", tls.port());
        assert!(curl_fails(&[
            "--resolve",
            &r,
            "--cacert",
            blog_c.to_str().unwrap(),
            &url
        ]));
        // HTTP/2 by ALPN.
        let (code, _, headers) = https(tls, "shop.example.com", "/whoami", &shop_c, &["--http2"]);
        assert_eq!(code, 200);
        assert!(headers.starts_with("HTTP/2 200"), "{headers}");
        // HTTP/1.1 when the client asks for it.
        let (_, _, headers) = https(tls, "shop.example.com", "/whoami", &shop_c, &["--http1.1"]);
        assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
        // Plain HTTP is redirected to HTTPS, path and query kept.
        let url = format!("http://shop.example.com:{}/a/b?c=1", http.port());
        let (code, _, headers) = curl(&["--resolve", &resolve("shop.example.com", http), &url]);
        assert_eq!(code, 308);
        let want = format!("location: https://shop.example.com:{}/a/b?c=1", tls.port());
        assert!(headers.to_ascii_lowercase().contains(&want), "{headers}");
    })
    .await
    .unwrap();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_naming_the_host_and_files_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (good_c, good_k) = cert(d, "good", &["shop.example.com"], 30);
    let (_, other_k) = cert(d, "other", &["shop.example.com"], 30);
    let (blog_c, _) = cert(d, "blog", &["blog.example.com"], 30);
    let (old_c, old_k) = cert(d, "old", &["blog.example.com"], -1);
    let (wrong_c, wrong_k) = cert(d, "wrong", &["elsewhere.example.com"], 30);
    let proxy = Proxy::start(d).await;
    let (shop, blog) = (Backend::start("shop").await, Backend::start("blog").await);
    let c = &proxy.client;
    let live_c = d.join("live.pem");
    let live_k = d.join("live.key");
    std::fs::copy(&good_c, &live_c).unwrap();
    std::fs::copy(&good_k, &live_k).unwrap();
    c.set_route(
        "shop",
        &tls_route(&["shop.example.com"], &live_c, &live_k, None),
        shop.upstream(),
    )
    .await
    .unwrap();

    let refused = [
        (
            tls_route(&["blog.example.com"], &blog_c, &other_k, None),
            "does not match its private key",
        ),
        (
            tls_route(&["blog.example.com"], &old_c, &old_k, None),
            "expired",
        ),
        (
            tls_route(&["blog.example.com"], &wrong_c, &wrong_k, None),
            "does not cover",
        ),
        (
            tls_route(
                &["blog.example.com"],
                &d.join("missing.pem"),
                &wrong_k,
                None,
            ),
            "cannot read",
        ),
    ];
    for (route, why) in refused {
        let e = c
            .set_route("blog", &route, blog.upstream())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("app `blog`") || e.contains("shop.example.com"),
            "{e}"
        );
        assert!(e.contains(why), "{why}: {e}");
        if why != "does not match its private key" {
            assert!(e.contains("blog.example.com"), "names the host: {e}");
        }
    }
    assert!(c.routes().await.unwrap().iter().all(|r| r.app != "blog"));
    let tls = c.edge().await.unwrap().https.unwrap();
    let get = move |ca: PathBuf| https(tls, "shop.example.com", "/whoami", &ca, &[]);
    let (code, body, _) = tokio::task::spawn_blocking({
        let good_c = good_c.clone();
        move || get(good_c)
    })
    .await
    .unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "shop /whoami"),
        "running route kept serving"
    );

    // A bad file replacing the live one is reported and the old certificate stays.
    std::fs::copy(&other_k, &live_k).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, _, _) = tokio::task::spawn_blocking({
        let good_c = good_c.clone();
        move || get(good_c)
    })
    .await
    .unwrap();
    assert_eq!(code, 200);

    // A renewed certificate is picked up without a restart.
    let (new_c, new_k) = cert(d, "new", &["shop.example.com"], 60);
    std::fs::copy(&new_k, &live_k).unwrap();
    std::fs::copy(&new_c, &live_c).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ca = new_c.clone();
        let r = resolve("shop.example.com", tls);
        let url = format!("https://shop.example.com:{}/whoami", tls.port());
        let ok = tokio::task::spawn_blocking(move || {
            !curl_fails(&["--resolve", &r, "--cacert", ca.to_str().unwrap(), &url])
        })
        .await
        .unwrap();
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    proxy.stop().await;
}
