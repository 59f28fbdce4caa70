//! Slipway wire types and the trust core: app specs, releases, the signed envelope, keys and
//! trust files. Pure: no I/O beyond parsing bytes handed in, no async.
#![forbid(unsafe_code)]

pub mod api;
pub mod edge;
pub mod envelope;
pub mod id;
pub mod join;
pub mod keys;
pub mod release;
pub mod seal;
pub mod spec;
pub mod trust;
pub mod version;

pub use edge::{EdgeSpec, TlsSpec};
pub use envelope::{Envelope, Signature, VerifiedRelease, VerifyError, RELEASE_PAYLOAD_TYPE};
pub use id::{AppName, ContainerId, HostId, IdError};
pub use keys::{KeyError, KeyId, PublicKey, SigningKey};
pub use release::{check_seq, Digest, ImageRef, ImageRefError, Release, ReplayError};
pub use spec::{
    valid_secret_name, valid_volume_name, AppSpec, DnsSpec, HealthKind, Protocol, Seccomp,
    SecretFile, SecretPin, SpecError,
};
pub use trust::{TrustError, TrustFile};
