//! Test support for end-to-end tests.
pub mod bins;
pub mod image;
pub mod registry;
pub mod load;
pub mod host;
