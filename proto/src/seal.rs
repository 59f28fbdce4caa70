//! Sealed secrets: an X25519 + HKDF-SHA256 + ChaCha20-Poly1305 sealed box from the
//! controller to one host, bound (as AEAD associated data) to app, secret name, version and
//! host id so a sealed value cannot be replayed onto another host, app, name or version;
//! and the controller's at-rest encryption of secret material under its master key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// Domain separation for the sealed box key derivation and its associated data.
const SEAL_INFO: &[u8] = b"slipway-sealed-secret-v1";
/// Domain separation for secret material encrypted at rest under the master key.
const AT_REST_INFO: &[u8] = b"slipway-secret-at-rest-v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("host public key is not 32 base64 bytes: {0}")]
    BadPublicKey(String),
    #[error("host private key is not 32 bytes: {0}")]
    BadPrivateKey(String),
    #[error("master key is not 32 bytes: {0}")]
    BadMasterKey(String),
    #[error("sealed secret {what} is malformed: {reason}")]
    Malformed { what: String, reason: String },
    #[error(
        "sealed secret {what} does not open: it was tampered with, or sealed to another key, \
         host, app, name or version"
    )]
    Open { what: String },
    #[error("could not draw random bytes for a secret")]
    Random,
}

fn random<const N: usize>() -> Result<[u8; N], SealError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| SealError::Random)?;
    Ok(b)
}

/// The host's X25519 public key, base64 of 32 bytes on the wire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPublicKey([u8; 32]);

impl HostPublicKey {
    pub fn parse(s: &str) -> Result<Self, SealError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|e| SealError::BadPublicKey(e.to_string()))?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadPublicKey(format!("{} bytes", raw.len())))?;
        Ok(Self(raw))
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

impl TryFrom<String> for HostPublicKey {
    type Error = SealError;
    fn try_from(s: String) -> Result<Self, SealError> {
        Self::parse(&s)
    }
}
impl From<HostPublicKey> for String {
    fn from(k: HostPublicKey) -> String {
        k.to_base64()
    }
}
impl fmt::Debug for HostPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPublicKey({})", self.to_base64())
    }
}

/// The host's X25519 private key. Never leaves the host; Debug does not print it.
pub struct HostSecretKey(StaticSecret);

impl HostSecretKey {
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self(StaticSecret::from(random::<32>()?)))
    }
    pub fn from_bytes(raw: &[u8]) -> Result<Self, SealError> {
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| SealError::BadPrivateKey(format!("{} bytes", raw.len())))?;
        Ok(Self(StaticSecret::from(raw)))
    }
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    pub fn public(&self) -> HostPublicKey {
        HostPublicKey(XPublic::from(&self.0).to_bytes())
    }
}

impl fmt::Debug for HostSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostSecretKey(public {})", self.public().to_base64())
    }
}

/// What a sealed value is bound to; a mismatch on any field makes opening fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealContext<'a> {
    pub app: &'a str,
    pub name: &'a str,
    pub version: u64,
    pub host: &'a str,
}

impl SealContext<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut v = SEAL_INFO.to_vec();
        for part in [self.app, self.name, &self.version.to_string(), self.host] {
            v.push(0);
            v.extend_from_slice(part.as_bytes());
        }
        v
    }
    fn what(&self) -> String {
        format!(
            "`{}` v{} of app `{}` for host `{}`",
            self.name, self.version, self.app, self.host
        )
    }
}

/// A secret value sealed to one host: ephemeral public key, nonce and ciphertext, base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub epk: String,
    pub nonce: String,
    pub ct: String,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.ct.len())
    }
}

fn box_key(shared: &[u8; 32], epk: &[u8; 32], recipient: &[u8; 32]) -> Key {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(epk);
    salt[32..].copy_from_slice(recipient);
    let hk = Hkdf::<Sha256>::new(Some(&salt), shared);
    let mut okm = [0u8; 32];
    hk.expand(SEAL_INFO, &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Key::from(okm)
}

/// Seals `plaintext` to `recipient` for the context `ctx`.
pub fn seal(
    recipient: &HostPublicKey,
    ctx: &SealContext<'_>,
    plaintext: &[u8],
) -> Result<SealedSecret, SealError> {
    let eph = StaticSecret::from(random::<32>()?);
    let epk = XPublic::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&XPublic::from(recipient.0)).to_bytes();
    let key = box_key(&shared, &epk, &recipient.0);
    let nonce = random::<NONCE_LEN>()?;
    let ct = ChaCha20Poly1305::new(&key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ctx.aad(),
            },
        )
        .map_err(|_| SealError::Open { what: ctx.what() })?;
    Ok(SealedSecret {
        epk: B64.encode(epk),
        nonce: B64.encode(nonce),
        ct: B64.encode(ct),
    })
}

fn decode_fixed<const N: usize>(what: &str, field: &str, s: &str) -> Result<[u8; N], SealError> {
    let malformed = |reason: String| SealError::Malformed {
        what: what.to_string(),
        reason,
    };
    let raw = B64
        .decode(s)
        .map_err(|e| malformed(format!("{field}: {e}")))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| malformed(format!("{field}: {} bytes, expected {N}", raw.len())))
}

/// Opens a sealed value with the host's private key; fails on any tampering or mismatch.
pub fn open(
    key: &HostSecretKey,
    sealed: &SealedSecret,
    ctx: &SealContext<'_>,
) -> Result<Vec<u8>, SealError> {
    let what = ctx.what();
    let epk: [u8; 32] = decode_fixed(&what, "epk", &sealed.epk)?;
    let nonce: [u8; NONCE_LEN] = decode_fixed(&what, "nonce", &sealed.nonce)?;
    let ct = B64.decode(&sealed.ct).map_err(|e| SealError::Malformed {
        what: what.clone(),
        reason: format!("ct: {e}"),
    })?;
    let shared = key.0.diffie_hellman(&XPublic::from(epk)).to_bytes();
    let aead_key = box_key(&shared, &epk, &key.public().0);
    ChaCha20Poly1305::new(&aead_key)
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: &ctx.aad(),
            },
        )
        .map_err(|_| SealError::Open { what })
}

/// `sha256:<hex>` of a secret value: what a signed release pins per secret version.
pub fn secret_digest(plaintext: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(plaintext)))
}

/// The controller's master key: encrypts secret material at rest in the store.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> Result<Self, SealError> {
        Ok(Self(random::<32>()?))
    }
    /// Parses the key file's contents: base64 of 32 bytes.
    pub fn parse(s: &str) -> Result<Self, SealError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|e| SealError::BadMasterKey(e.to_string()))?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| SealError::BadMasterKey(format!("{} bytes", raw.len())))?;
        Ok(Self(raw))
    }
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// Encrypts `plaintext` bound to `label` (e.g. "app/name/version"); output is
    /// base64(nonce || ciphertext).
    pub fn encrypt(&self, label: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let nonce = random::<NONCE_LEN>()?;
        let aad = [AT_REST_INFO, b"\0", label.as_bytes()].concat();
        let ct = ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Open {
                what: label.to_string(),
            })?;
        Ok(B64.encode([nonce.as_slice(), &ct].concat()))
    }

    /// Decrypts what [`MasterKey::encrypt`] made for the same `label`.
    pub fn decrypt(&self, label: &str, stored: &str) -> Result<Vec<u8>, SealError> {
        let raw = B64.decode(stored).map_err(|e| SealError::Malformed {
            what: label.to_string(),
            reason: e.to_string(),
        })?;
        if raw.len() < NONCE_LEN {
            return Err(SealError::Malformed {
                what: label.to_string(),
                reason: format!("{} bytes, shorter than a nonce", raw.len()),
            });
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let aad = [AT_REST_INFO, b"\0", label.as_bytes()].concat();
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SealError::Open {
                what: label.to_string(),
            })
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[cfg(test)]
mod tests;
