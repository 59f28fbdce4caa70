//! Ed25519 keys: generation, PEM encoding, and key ids (hex sha256 of the raw public key).

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::fmt;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow it.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "private key is not a PEM `PRIVATE KEY` block holding an Ed25519 PKCS#8 document: {0}"
    )]
    BadPrivateKey(String),
    #[error("public key is not an Ed25519 PEM `PUBLIC KEY` block or 32 base64 bytes: {0}")]
    BadPublicKey(String),
    #[error("could not generate a key: {0}")]
    Generate(String),
}

/// Key id: lowercase hex sha256 of the 32-byte raw Ed25519 public key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl PublicKey {
    pub fn from_raw(raw: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::BadPublicKey(format!("{} bytes, expected 32", raw.len())))?;
        Ok(Self { raw })
    }

    /// Parses a PEM `PUBLIC KEY` block (SPKI) or bare base64 of the 32 raw bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            let der = pem_decode(text, "PUBLIC KEY")
                .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
            let raw = der
                .strip_prefix(&SPKI_ED25519_PREFIX[..])
                .ok_or_else(|| KeyError::BadPublicKey("not an Ed25519 SPKI".into()))?;
            Self::from_raw(raw)
        } else {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
            Self::from_raw(&raw)
        }
    }

    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    pub fn id(&self) -> KeyId {
        KeyId(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            &self.raw,
        )))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.raw)
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem_encode(&der, "PUBLIC KEY")
    }

    /// True when `sig` is a valid Ed25519 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(msg, sig)
            .is_ok()
    }
}

/// An Ed25519 signing key, kept as its PKCS#8 document.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().id())
    }
}

impl SigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let doc =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| KeyError::Generate(e.to_string()))?;
        Self::from_pkcs8(doc.as_ref())
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Ok(Self {
            pkcs8: der.to_vec(),
            pair,
        })
    }

    /// Parses a PEM `PRIVATE KEY` block holding a PKCS#8 Ed25519 key.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let der = pem_decode(text.trim(), "PRIVATE KEY")
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Self::from_pkcs8(&der)
    }

    pub fn to_pem(&self) -> String {
        pem_encode(&self.pkcs8, "PRIVATE KEY")
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_raw(self.pair.public_key().as_ref())
            .expect("ed25519 public keys are 32 bytes")
    }

    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Why a PEM block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("missing `{0}`")]
    Missing(String),
    #[error("bad base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

fn pem_decode(text: &str, label: &str) -> Result<Vec<u8>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or(PemError::Missing(begin.clone()))? + begin.len();
    let stop = text[start..].find(&end).ok_or(PemError::Missing(end))? + start;
    let body: String = text[start..stop].split_whitespace().collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let k = SigningKey::generate().unwrap();
        let k2 = SigningKey::from_pem(&k.to_pem()).unwrap();
        assert_eq!(k.public_key(), k2.public_key());
        let p = PublicKey::parse(&k.public_key().to_pem()).unwrap();
        assert_eq!(p, k.public_key());
        let p = PublicKey::parse(&k.public_key().to_base64()).unwrap();
        assert_eq!(p.id(), k.public_key().id());
        assert_eq!(p.id().0.len(), 64);
    }

    #[test]
    fn garbage_keys_rejected() {
        assert!(PublicKey::parse("not a key").is_err());
        assert!(SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .is_err());
    }
}
