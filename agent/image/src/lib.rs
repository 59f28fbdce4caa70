//! Slipway image pipeline: pull by digest, verify every byte, store each layer once, unpack
//! safely into overlayfs-ready directories, and garbage-collect what no release needs.
//!
//! Store layout under its root: `blobs/sha256/<hex>` (verified blobs), `layers/<diff_id hex>/`
//! (unpacked layers, complete ones only), `tmp/` (work in progress), `lock`.
#![forbid(unsafe_code)]

pub mod defaults;
pub mod error;
mod fetch;
pub mod gc;
pub mod manifest;
pub mod metrics;
mod pax;
pub mod pull;
pub mod registry;
pub mod store;
pub mod unpack;

pub use error::ImageError;
pub use gc::GcReport;
pub use metrics::ImageMetrics;
pub use pull::{LayerReport, Progress, PullReport, PulledImage, Puller};
pub use registry::{Credentials, FailureKind, RegistryConfig, RegistryError, Repository, TlsFiles};
pub use store::Store;
pub use unpack::Limits;
