//! Tag resolution on a private registry (the real `docker-registry`, htpasswd over TLS with
//! a test CA), with the same credential and TLS settings the agent uses.

use slipway_controller::config::RegistryConfig;
use slipway_controller::resolve::{ResolveError, Resolver};
use slipway_image::{Credentials, TlsFiles};
use slipway_tests::image::busybox_httpd_image;
use slipway_tests::pki::TestCa;
use slipway_tests::registry::Registry;

#[tokio::test]
async fn resolves_a_tag_on_a_private_tls_registry() {
    let ca = TestCa::new("controller").unwrap();
    let plain = Registry::start().unwrap();
    let pushed = busybox_httpd_image("resolve")
        .push(plain.addr(), "private/web", "v1")
        .unwrap();
    let private = Registry::locked(&plain, &ca, "ci", "pw").unwrap();
    let addr = private.addr().to_string();
    let repo = format!("{addr}/private/web");
    let config = |password: &str, ca_file| {
        let mut cfg = RegistryConfig::default();
        cfg.auth.insert(
            addr.clone(),
            Credentials::Basic {
                username: "ci".into(),
                password: password.into(),
            },
        );
        cfg.tls.insert(
            addr.clone(),
            TlsFiles {
                ca_file: Some(ca_file),
                ..Default::default()
            },
        );
        cfg
    };

    let resolver = Resolver::new(&config("pw", ca.ca_file()));
    let resolved = resolver
        .resolve(&format!("{repo}:v1"), &repo)
        .await
        .unwrap();
    assert_eq!(resolved.image.digest, pushed.digest);
    assert_eq!(resolved.image.repository, repo);

    let err = Resolver::new(&config("wrong", ca.ca_file()))
        .resolve(&format!("{repo}:v1"), &repo)
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("authentication failed"), "{err}");

    let other = TestCa::new("other").unwrap();
    let err = Resolver::new(&config("pw", other.ca_file()))
        .resolve(&format!("{repo}:v1"), &repo)
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Tls { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");

    let err = Resolver::new(&config("pw", ca.ca_file()))
        .resolve(&format!("{repo}:nope"), &repo)
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err}");
}
