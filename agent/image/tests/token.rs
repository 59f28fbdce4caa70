//! The Bearer token flow against the real `docker-registry` with `auth.token`: a tiny
//! in-process token issuer checks Basic credentials and signs ES256 JWTs (x5c header) under
//! a root the registry trusts, as Docker Hub's and GHCR's token services do.

use base64::Engine;
use slipway_image::{Credentials, Puller, RegistryConfig, Store};
use slipway_proto::ImageRef;
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::registry::{Private, Registry, TokenAuth};
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "robot";
const PASSWORD: &str = "pat-9";
const SERVICE: &str = "slipway-test-registry";
const ISSUER: &str = "slipway-test-issuer";
/// The identity (OAuth2 refresh) token the issuer accepts.
const REFRESH: &str = "refresh-77";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

struct Issuer {
    key: ring::signature::EcdsaKeyPair,
    cert_der: Vec<u8>,
}

impl Issuer {
    fn new(dir: &std::path::Path) -> Issuer {
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "token.pem",
            "-subj",
            "/CN=slipway token",
            "-days",
            "2",
        ]);
        run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
        ]);
        run(&[
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]);
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(dir.join("key.der")).unwrap(),
            &rng,
        )
        .unwrap();
        Issuer {
            key,
            cert_der: std::fs::read(dir.join("token.der")).unwrap(),
        }
    }

    /// A JWT granting `scope` (`repository:NAME:pull`).
    fn token(&self, scope: &str) -> String {
        let header = serde_json::json!({
            "typ": "JWT", "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&self.cert_der)],
        });
        let parts: Vec<&str> = scope.split(':').collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": USER, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}"),
            "access": [{"type": parts[0], "name": parts[1], "actions": ["pull"]}],
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!("{signing_input}.{}", b64url(sig.as_ref()))
    }
}

/// Serves `GET /token?service=..&scope=..`: Basic credentials checked, a JWT answered.
async fn serve_tokens(
    issuer: Arc<Issuer>,
    seen: Arc<Mutex<Vec<String>>>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (issuer, seen) = (issuer.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                // OAuth2 (identity token): a POST form with the refresh token.
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if conn.read_exact(&mut body).await.is_err() {
                    return;
                }
                let form = String::from_utf8_lossy(&body).into_owned();
                let target = if head.starts_with("POST ") {
                    format!("POST {}?{form}", head.split(' ').nth(1).unwrap_or(""))
                } else {
                    head.split(' ').nth(1).unwrap_or("").to_string()
                };
                let expected = format!(
                    "authorization: basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
                )
                .to_ascii_lowercase();
                let authorized = head.lines().any(|l| l.to_ascii_lowercase() == expected)
                    || (form.contains("grant_type=refresh_token")
                        && form.contains(&format!("refresh_token={REFRESH}")));
                seen.lock().unwrap().push(target.clone());
                let scope = target
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .map(|s| s.replace("%3A", ":").replace("%2F", "/"))
                    .unwrap_or_default();
                let reply = if authorized {
                    // The OAuth2 answer names it access_token.
                    let key = if form.is_empty() {
                        "token"
                    } else {
                        "access_token"
                    };
                    let body = serde_json::json!({key: issuer.token(&scope), "expires_in": 300})
                        .to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn bearer_token_flow_on_a_real_registry() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Arc::new(Issuer::new(dir.path()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (token_addr, task) = serve_tokens(issuer, seen.clone()).await;

    let plain = Registry::start().unwrap();
    let image = busybox_httpd_image("token");
    image.push(plain.addr(), "private/web", "v1").unwrap();
    let reg = Registry::start_private(
        "127.0.0.1",
        &Private {
            storage: Some(plain.storage_dir()),
            token: Some(TokenAuth {
                realm: format!("http://{token_addr}/token"),
                service: SERVICE.into(),
                issuer: ISSUER.into(),
                rootcertbundle: dir.path().join("token.pem"),
            }),
            ..Default::default()
        },
    )
    .unwrap();
    let image_ref: ImageRef = format!("{}/private/web@{}", reg.addr(), image.manifest_digest)
        .parse()
        .unwrap();
    let config = |password: &str| {
        let mut cfg = RegistryConfig {
            insecure: vec![reg.addr().into()],
            ..Default::default()
        };
        cfg.auth.insert(
            reg.addr().into(),
            Credentials::Basic {
                username: USER.into(),
                password: password.into(),
            },
        );
        cfg
    };

    let store = dir.path().join("store");
    let pulled = Puller::new(Store::open(&store).unwrap(), config(PASSWORD))
        .pull(&image_ref)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(pulled.report.layers_fetched, 2);
    let asked = seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "one token for the whole pull: {asked:?}");
    assert!(
        asked[0].contains(&format!("service={SERVICE}")),
        "{asked:?}"
    );

    let err = Puller::new(
        Store::open(&dir.path().join("other")).unwrap(),
        config("wrong"),
    )
    .pull(&image_ref)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("authentication failed") && err.contains("token endpoint"),
        "{err}"
    );

    // An identity token from a docker config.json (as `docker login` stores it for Azure
    // ACR): exchanged at the token endpoint with grant_type=refresh_token.
    let docker = dir.path().join("config.json");
    let identity = |token: &str| {
        std::fs::write(
            &docker,
            serde_json::json!({"auths": {reg.addr(): {"auth": "", "identitytoken": token}}})
                .to_string(),
        )
        .unwrap();
        RegistryConfig {
            insecure: vec![reg.addr().into()],
            docker_config: Some(docker.clone()),
            ..Default::default()
        }
    };
    seen.lock().unwrap().clear();
    let pulled = Puller::new(
        Store::open(&dir.path().join("identity")).unwrap(),
        identity(REFRESH),
    )
    .pull(&image_ref)
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", reg.log()));
    assert_eq!(pulled.report.layers_fetched, 2);
    let asked = seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].starts_with("POST /token?")
            && asked[0].contains("grant_type=refresh_token")
            && asked[0].contains("client_id=slipway")
            && asked[0].contains(&format!("service={SERVICE}")),
        "{asked:?}"
    );
    let err = Puller::new(
        Store::open(&dir.path().join("identity-bad")).unwrap(),
        identity("revoked"),
    )
    .pull(&image_ref)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("token endpoint") && err.contains("identity token"),
        "{err}"
    );
    task.abort();
}
