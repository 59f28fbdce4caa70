//! Registry auth flows against the fake registry: the Bearer token flow Docker Hub and GHCR
//! use (401 with realm/service/scope, token fetched with Basic credentials, then
//! `Authorization: Bearer`), and a pull interrupted mid-layer and resumed by a new puller
//! (an agent restart) with the manifest cached, credentials sent on every request.

mod common;

use common::{FakeAuth, FakeRegistry, Fault};
use slipway_image::{Credentials, Puller, RegistryConfig, Store};
use slipway_proto::ImageRef;
use slipway_tests::image::{busybox_httpd_image, Image};

const USER: &str = "robot";
const PASSWORD: &str = "pat-123";

async fn fake(auth: FakeAuth) -> (FakeRegistry, Image) {
    let fake = FakeRegistry::start().await;
    let image = busybox_httpd_image("token flow");
    fake.add_image("demo/web", &image);
    fake.require(auth);
    (fake, image)
}

fn config(fake: &FakeRegistry, password: &str) -> RegistryConfig {
    let mut cfg = RegistryConfig {
        insecure: vec![fake.addr.clone()],
        ..Default::default()
    };
    cfg.auth.insert(
        fake.addr.clone(),
        Credentials::Basic {
            username: USER.into(),
            password: password.into(),
        },
    );
    cfg
}

fn reference(fake: &FakeRegistry, image: &Image) -> ImageRef {
    format!("{}/demo/web@{}", fake.addr, image.manifest_digest)
        .parse()
        .unwrap()
}

#[tokio::test]
async fn bearer_token_flow() {
    let (fake, image) = fake(FakeAuth::Bearer(USER.into(), PASSWORD.into())).await;
    let store = tempfile::tempdir().unwrap();
    let puller = Puller::new(Store::open(store.path()).unwrap(), config(&fake, PASSWORD));
    let pulled = puller.pull(&reference(&fake, &image)).await.unwrap();
    assert_eq!(pulled.report.layers_fetched, 2);
    let asked = fake.token_requests();
    assert!(!asked.is_empty());
    assert!(
        asked[0].contains("service=fake-registry")
            && asked[0].contains("scope=repository%3Ademo%2Fweb%3Apull"),
        "{asked:?}"
    );
    // One token served the whole pull (manifest, config, two layers).
    assert_eq!(asked.len(), 1, "token reused: {asked:?}");

    let err = Puller::new(
        Store::open(&store.path().join("other")).unwrap(),
        config(&fake, "wrong"),
    )
    .pull(&reference(&fake, &image))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        err.contains("token endpoint") && err.contains(&format!("refused user `{USER}`")),
        "{err}"
    );
}

#[tokio::test]
async fn interrupted_pull_resumes_after_a_restart_with_credentials() {
    for auth in [
        FakeAuth::Basic(USER.into(), PASSWORD.into()),
        FakeAuth::Bearer(USER.into(), PASSWORD.into()),
    ] {
        let (fake, image) = fake(auth.clone()).await;
        let layer = &image.layers[0];
        let path = format!("/v2/demo/web/blobs/{}", layer.digest);
        // Every attempt at the base layer dies mid-body (and ranges are refused): the
        // pull fails after its retries, as when the agent is stopped mid-layer.
        fake.fault(&path, Fault::Truncate(layer.bytes.len() / 2));
        let store = tempfile::tempdir().unwrap();
        let err = Puller::new(Store::open(store.path()).unwrap(), config(&fake, PASSWORD))
            .pull(&reference(&fake, &image))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("gave up after 5 attempts"), "{auth:?}: {err}");
        assert!(store
            .path()
            .join("blobs/sha256")
            .join(image.manifest_digest.hex())
            .exists());

        // "Restarted": a new puller on the same store; the manifest comes from the store,
        // and the blobs still get credentials.
        fake.clear_faults();
        let pulled = Puller::new(Store::open(store.path()).unwrap(), config(&fake, PASSWORD))
            .pull(&reference(&fake, &image))
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        assert!(pulled.report.layers_fetched >= 1, "{auth:?}");
        assert!(store
            .path()
            .join("layers")
            .join(layer.diff_id.hex())
            .is_dir());
    }
}
