//! `slipway` subcommands, one module each.
pub mod keygen;
pub mod release;
pub mod trust;
