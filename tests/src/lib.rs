//! Test support for end-to-end tests.
pub mod bins;
pub mod browser;
pub mod controller;
pub mod debian_image;
pub mod fleet;
pub mod host;
pub mod image;
pub mod lan;
pub mod load;
pub mod pki;
pub mod postgres;
pub mod registry;
pub mod tamper;
