use super::*;

fn ctx() -> SealContext<'static> {
    SealContext {
        app: "web",
        name: "db-password",
        version: 3,
        host: "host-a",
    }
}

#[test]
fn round_trip_opens_only_with_the_host_key() {
    let host = HostSecretKey::generate().unwrap();
    let sealed = seal(&host.public(), &ctx(), b"hunter2").unwrap();
    assert!(!sealed.ct.contains("hunter2"));
    assert_eq!(open(&host, &sealed, &ctx()).unwrap(), b"hunter2");

    let again = HostSecretKey::from_bytes(&host.to_bytes()).unwrap();
    assert_eq!(open(&again, &sealed, &ctx()).unwrap(), b"hunter2");
}

#[test]
fn wrong_key_is_refused() {
    let host = HostSecretKey::generate().unwrap();
    let other = HostSecretKey::generate().unwrap();
    let sealed = seal(&host.public(), &ctx(), b"hunter2").unwrap();
    let err = open(&other, &sealed, &ctx()).unwrap_err();
    assert!(matches!(err, SealError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains("`db-password` v3 of app `web`"),
        "{err}"
    );
}

#[test]
fn every_tampered_byte_is_refused() {
    let host = HostSecretKey::generate().unwrap();
    let sealed = seal(&host.public(), &ctx(), b"hunter2").unwrap();
    let ct = B64.decode(&sealed.ct).unwrap();
    for i in 0..ct.len() {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        let tampered = SealedSecret {
            ct: B64.encode(&bad),
            ..sealed.clone()
        };
        assert!(open(&host, &tampered, &ctx()).is_err(), "byte {i}");
    }
    let mut epk = B64.decode(&sealed.epk).unwrap();
    epk[0] ^= 0x01;
    let tampered = SealedSecret {
        epk: B64.encode(&epk),
        ..sealed.clone()
    };
    assert!(open(&host, &tampered, &ctx()).is_err());
    let short = SealedSecret {
        nonce: B64.encode([0u8; 4]),
        ..sealed
    };
    let err = open(&host, &short, &ctx()).unwrap_err();
    assert!(err.to_string().contains("nonce: 4 bytes"), "{err}");
}

#[test]
fn wrong_context_is_refused() {
    let host = HostSecretKey::generate().unwrap();
    let sealed = seal(&host.public(), &ctx(), b"hunter2").unwrap();
    for other in [
        SealContext {
            app: "api",
            ..ctx()
        },
        SealContext {
            name: "api-key",
            ..ctx()
        },
        SealContext {
            version: 4,
            ..ctx()
        },
        SealContext {
            host: "host-b",
            ..ctx()
        },
    ] {
        assert!(open(&host, &sealed, &other).is_err(), "{other:?}");
    }
}

#[test]
fn public_key_round_trips_and_bad_keys_are_named() {
    let host = HostSecretKey::generate().unwrap();
    let pk = host.public();
    let json = serde_json::to_string(&pk).unwrap();
    assert_eq!(serde_json::from_str::<HostPublicKey>(&json).unwrap(), pk);
    let err = HostPublicKey::parse("AAAA").unwrap_err();
    assert!(err.to_string().contains("3 bytes"), "{err}");
    assert!(!format!("{host:?}").contains(&B64.encode(host.to_bytes())));
}

#[test]
fn master_key_encrypts_at_rest_bound_to_label() {
    let mk = MasterKey::generate().unwrap();
    let stored = mk.encrypt("web/db-password/1", b"hunter2").unwrap();
    assert!(!stored.contains("hunter2"));
    assert_eq!(
        mk.decrypt("web/db-password/1", &stored).unwrap(),
        b"hunter2"
    );
    assert!(mk.decrypt("web/db-password/2", &stored).is_err());
    let other = MasterKey::parse(&MasterKey::generate().unwrap().to_base64()).unwrap();
    assert!(other.decrypt("web/db-password/1", &stored).is_err());
}

#[test]
fn digest_is_sha256_hex() {
    assert_eq!(
        secret_digest(b""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
