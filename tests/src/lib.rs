//! Test support for end-to-end tests.
pub mod bins;
