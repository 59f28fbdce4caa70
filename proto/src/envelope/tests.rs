use super::*;
use crate::spec::AppSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn spec() -> AppSpec {
    AppSpec::from_toml(
        "name = \"web\"\nimage = \"127.0.0.1:5000/web\"\nlisten = 8080\ncontainer_port = 80\n",
    )
    .unwrap()
}

fn release(image: &str, expires_in: Duration) -> Release {
    let now = SystemTime::now();
    Release {
        app: "web".parse().unwrap(),
        seq: 7,
        image: image.into(),
        spec: spec(),
        issued_at: now,
        expires: now + expires_in,
        key_set_version: 1,
        annotations: BTreeMap::new(),
    }
}

fn good() -> Release {
    release(
        &format!("127.0.0.1:5000/web@{DIGEST}"),
        Duration::from_secs(3600),
    )
}

fn trust(keys: &[&SigningKey], threshold: u32) -> TrustFile {
    TrustFile::new(keys.iter().map(|k| k.public_key()).collect(), threshold, 1).unwrap()
}

#[test]
fn round_trip() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&k]);
    let parsed = Envelope::from_json(env.to_json().as_bytes()).unwrap();
    let v = parsed
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .unwrap();
    assert_eq!(v.release.seq, 7);
    assert_eq!(v.image.digest.to_string(), DIGEST);
    assert_eq!(v.signers, vec![k.public_key().id()]);
}

#[test]
fn untrusted_key_fails() {
    let k = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&other]);
    let e = env
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::UnknownKey(ref ids) if ids == &vec![other.public_key().id().0]),
        "{e}"
    );
}

#[test]
fn same_key_twice_does_not_meet_threshold_two() {
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&a, &a]);
    let e = env
        .verify_release(&trust(&[&a, &b], 2), SystemTime::now())
        .unwrap_err();
    assert_eq!(
        e,
        VerifyError::TooFewSigners {
            found: 1,
            threshold: 2
        }
    );
    let env = Envelope::sign_release(&good(), &[&a, &b]);
    assert_eq!(
        env.verify_release(&trust(&[&a, &b], 2), SystemTime::now())
            .unwrap()
            .signers
            .len(),
        2
    );
}

#[test]
fn forged_key_id_counts_nothing() {
    // A signature by an untrusted key that claims a trusted key id is a bad signature.
    let a = SigningKey::generate().unwrap();
    let evil = SigningKey::generate().unwrap();
    let mut env = Envelope::sign_release(&good(), &[&evil]);
    env.signatures[0].keyid = a.public_key().id().0;
    let e = env
        .verify_release(&trust(&[&a], 1), SystemTime::now())
        .unwrap_err();
    assert!(matches!(e, VerifyError::BadSignature(_)), "{e}");
}

#[test]
fn expired_fails() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&k]);
    let later = SystemTime::now() + Duration::from_secs(7200);
    let e = env.verify_release(&trust(&[&k], 1), later).unwrap_err();
    assert!(matches!(e, VerifyError::Expired { .. }), "{e}");
}

#[test]
fn future_issue_fails() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&k]);
    let earlier = SystemTime::now() - Duration::from_secs(3600);
    let e = env.verify_release(&trust(&[&k], 1), earlier).unwrap_err();
    assert!(matches!(e, VerifyError::NotYetValid { .. }), "{e}");
}

#[test]
fn tag_instead_of_digest_fails() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(
        &release("127.0.0.1:5000/web:v2", Duration::from_secs(60)),
        &[&k],
    );
    let e = env
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .unwrap_err();
    assert!(e.to_string().contains("names a tag, not a digest"), "{e}");
}

#[test]
fn stale_key_set_fails() {
    let k = SigningKey::generate().unwrap();
    let env = Envelope::sign_release(&good(), &[&k]);
    let mut t = trust(&[&k], 1);
    t.key_set_version = 2;
    let e = env.verify_release(&t, SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::StaleKeySet {
                found: 1,
                required: 2,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn unknown_fields_fail() {
    let k = SigningKey::generate().unwrap();
    let mut v = serde_json::to_value(good()).unwrap();
    v["surprise"] = serde_json::json!(true);
    let env = Envelope::sign(
        RELEASE_PAYLOAD_TYPE,
        &serde_json::to_vec(&v).unwrap(),
        &[&k],
    );
    let e = env
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(e, VerifyError::MalformedBody(ref m) if m.contains("surprise")),
        "{e}"
    );
    let mut v = serde_json::to_value(good()).unwrap();
    v["spec"]["health"]["colour"] = serde_json::json!("red");
    let env = Envelope::sign(
        RELEASE_PAYLOAD_TYPE,
        &serde_json::to_vec(&v).unwrap(),
        &[&k],
    );
    assert!(env
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .is_err());
    let mut j: serde_json::Value =
        serde_json::from_str(&Envelope::sign_release(&good(), &[&k]).to_json()).unwrap();
    j["extra"] = serde_json::json!(1);
    assert!(matches!(
        Envelope::from_json(j.to_string().as_bytes()),
        Err(VerifyError::MalformedEnvelope(_))
    ));
}

#[test]
fn wrong_payload_type_fails() {
    let k = SigningKey::generate().unwrap();
    let body = serde_json::to_vec(&good()).unwrap();
    let env = Envelope::sign("application/json", &body, &[&k]);
    let e = env
        .verify_release(&trust(&[&k], 1), SystemTime::now())
        .unwrap_err();
    assert!(matches!(e, VerifyError::WrongPayloadType { .. }), "{e}");
}

#[test]
fn pae_is_dsse() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Flipping any bit of the body, the type or the signature makes verification fail.
    #[test]
    fn any_flip_fails(which in 0usize..3, pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let k = SigningKey::generate().unwrap();
        let t = trust(&[&k], 1);
        let body = serde_json::to_vec(&good()).unwrap();
        let mut env = Envelope::sign(RELEASE_PAYLOAD_TYPE, &body, &[&k]);
        match which {
            0 => {
                let mut b = body.clone();
                let i = pos.index(b.len());
                b[i] ^= 1 << bit;
                env.payload = b64().encode(&b);
            }
            1 => {
                let mut ty = env.payload_type.clone().into_bytes();
                let i = pos.index(ty.len());
                ty[i] ^= 1 << bit;
                env.payload_type = String::from_utf8_lossy(&ty).into_owned();
            }
            _ => {
                let mut sig = b64().decode(&env.signatures[0].sig).unwrap();
                let i = pos.index(sig.len());
                sig[i] ^= 1 << bit;
                env.signatures[0].sig = b64().encode(&sig);
            }
        }
        prop_assert!(env.verify_release(&t, SystemTime::now()).is_err());
        // The bare signature check alone also fails for the declared type.
        prop_assert!(env.verify_signatures(&env.payload_type.clone(), &t).is_err());
    }
}
