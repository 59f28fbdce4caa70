//! Pulls from a private registry as production runs one: the real `docker-registry` with
//! htpasswd users over TLS with a private CA (and client certificates). Every path carries
//! credentials, and a failure says whether auth, TLS or the network failed.

use slipway_image::{Credentials, Puller, RegistryConfig, Store, TlsFiles};
use slipway_proto::ImageRef;
use slipway_tests::image::{busybox_httpd_image, Image};
use slipway_tests::pki::TestCa;
use slipway_tests::registry::{free_port, Private, Registry};

const USER: &str = "deploy";
const PASSWORD: &str = "s3cret-pull";
const REPO: &str = "private/web";

/// A private registry (TLS + htpasswd, optionally client certs) holding one image.
struct Setup {
    _plain: Registry,
    private: Registry,
    ca: TestCa,
    image: Image,
    dir: tempfile::TempDir,
}

fn setup(client_certs: bool) -> Setup {
    let ca = TestCa::new("private registry").unwrap();
    // Pushed over plain HTTP to a registry on the same storage; served locked.
    let plain = Registry::start().unwrap();
    let image = busybox_httpd_image("private page");
    image.push(plain.addr(), REPO, "v1").unwrap();
    let private = Registry::start_private(
        "127.0.0.1",
        &Private {
            storage: Some(plain.storage_dir()),
            user: Some((USER.into(), PASSWORD.into())),
            tls: Some((ca.server_cert(), ca.server_key())),
            client_ca: client_certs.then(|| ca.ca_file()),
            token: None,
        },
    )
    .unwrap();
    Setup {
        _plain: plain,
        private,
        ca,
        image,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn image_ref(&self) -> ImageRef {
        format!(
            "{}/{REPO}@{}",
            self.private.addr(),
            self.image.manifest_digest
        )
        .parse()
        .unwrap()
    }

    fn config(&self, password: &str) -> RegistryConfig {
        let mut cfg = RegistryConfig::default();
        let host = self.private.addr().to_string();
        cfg.auth.insert(
            host.clone(),
            Credentials::Basic {
                username: USER.into(),
                password: password.into(),
            },
        );
        cfg.tls.insert(
            host,
            TlsFiles {
                ca_file: Some(self.ca.ca_file()),
                ..Default::default()
            },
        );
        cfg
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("store")
    }

    async fn pull(&self, cfg: RegistryConfig) -> Result<slipway_image::PulledImage, String> {
        Puller::new(Store::open(&self.store()).unwrap(), cfg)
            .pull(&self.image_ref())
            .await
            .map_err(|e| e.to_string())
    }

    /// Removes the unpacked layers and their blobs, keeping manifest and config: what a
    /// pull interrupted after the manifest leaves behind.
    fn drop_layers(&self) {
        for l in &self.image.layers {
            let _ = std::fs::remove_dir_all(self.store().join("layers").join(l.diff_id.hex()));
            let _ = std::fs::remove_file(self.store().join("blobs/sha256").join(l.digest.hex()));
        }
        assert!(self
            .store()
            .join("blobs/sha256")
            .join(self.image.manifest_digest.hex())
            .exists());
    }

    fn assert_names_target(&self, err: &str) {
        assert!(
            err.contains(self.private.addr()),
            "names the registry: {err}"
        );
        assert!(err.contains(REPO), "names the image: {err}");
    }
}

#[tokio::test]
async fn fresh_cached_manifest_and_restarted_pulls_carry_credentials() {
    let s = setup(false);
    let pulled = s.pull(s.config(PASSWORD)).await.unwrap();
    assert_eq!(pulled.report.layers_fetched, 2);
    assert_eq!(
        std::fs::read_to_string(pulled.layer_dirs[1].join("www/index.html")).unwrap(),
        "private page"
    );
    // Manifest cached, layers gone (an agent restarted mid-pull): a new puller, as after
    // a restart, fetches the layers with credentials.
    s.drop_layers();
    let again = s.pull(s.config(PASSWORD)).await.unwrap();
    assert_eq!(again.report.layers_fetched, 2);
    assert_eq!(again.report.layers_cached, 0);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_auth_errors() {
    let s = setup(false);
    let err = s.pull(s.config("wrong")).await.unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(err.contains(&format!("refused user `{USER}`")), "{err}");
    s.assert_names_target(&err);

    let mut anonymous = s.config(PASSWORD);
    anonymous.auth.clear();
    let err = s.pull(anonymous).await.unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        err.contains("needs credentials and none are configured"),
        "{err}"
    );

    // Wrong password with the manifest already cached: refused on the layers, not skipped.
    s.pull(s.config(PASSWORD)).await.unwrap();
    s.drop_layers();
    let err = s.pull(s.config("wrong")).await.unwrap_err();
    assert!(err.contains("authentication failed"), "{err}");
}

#[tokio::test]
async fn unknown_ca_is_a_tls_error() {
    let s = setup(false);
    let other = TestCa::new("some other").unwrap();
    let mut cfg = s.config(PASSWORD);
    cfg.tls.get_mut(s.private.addr()).unwrap().ca_file = Some(other.ca_file());
    let err = s.pull(cfg).await.unwrap_err();
    assert!(err.contains("TLS failed"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("ca_file"), "says where the CA goes: {err}");
    s.assert_names_target(&err);
}

#[tokio::test]
async fn dead_registry_is_a_network_error() {
    let port = free_port().unwrap();
    let image: ImageRef = format!("127.0.0.1:{port}/{REPO}@sha256:{}", "a".repeat(64))
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Puller::new(Store::open(dir.path()).unwrap(), RegistryConfig::default())
        .pull(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("network failed"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains(REPO),
        "{err}"
    );
}

#[tokio::test]
async fn client_certificate_per_registry() {
    let s = setup(true);
    let err = s.pull(s.config(PASSWORD)).await.unwrap_err();
    assert!(err.contains("TLS failed"), "no client certificate: {err}");
    let mut cfg = s.config(PASSWORD);
    let tls = cfg.tls.get_mut(s.private.addr()).unwrap();
    tls.cert_file = Some(s.ca.client_cert());
    tls.key_file = Some(s.ca.client_key());
    let pulled = s.pull(cfg).await.unwrap();
    assert_eq!(pulled.report.layers_fetched, 2);
}

#[tokio::test]
async fn docker_config_json_auths() {
    use base64::Engine;
    let s = setup(false);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let path = s.dir.path().join("config.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            s.private.addr()
        ),
    )
    .unwrap();
    let mut cfg = s.config(PASSWORD);
    cfg.auth.clear();
    cfg.docker_config = Some(path);
    s.pull(cfg).await.unwrap();
}

#[tokio::test]
async fn docker_certs_d_directory() {
    // The registry's CA and a client certificate, laid out as /etc/docker/certs.d is:
    // HOST:PORT/ca.crt, client.cert, client.key; no [tls] entry.
    let s = setup(true);
    let certs_d = s.dir.path().join("certs.d");
    let host_dir = certs_d.join(s.private.addr());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(s.ca.ca_file(), host_dir.join("ca.crt")).unwrap();
    let mut cfg = s.config(PASSWORD);
    cfg.tls.clear();
    cfg.certs_d = Some(certs_d.clone());
    let err = s.pull(cfg.clone()).await.unwrap_err();
    assert!(
        err.contains("TLS failed"),
        "CA but no client certificate: {err}"
    );
    std::fs::copy(s.ca.client_cert(), host_dir.join("client.cert")).unwrap();
    std::fs::copy(s.ca.client_key(), host_dir.join("client.key")).unwrap();
    let pulled = s.pull(cfg.clone()).await.unwrap();
    assert_eq!(pulled.report.layers_fetched, 2);
    // Without the directory the private CA is unknown.
    std::fs::remove_dir_all(&host_dir).unwrap();
    let err = Puller::new(Store::open(&s.dir.path().join("fresh")).unwrap(), cfg)
        .pull(&s.image_ref())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("UnknownIssuer"), "{err}");
}
