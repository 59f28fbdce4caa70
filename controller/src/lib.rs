//! Slipway controller: where releases are born. The `slipway` CLI lives in [`cli`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod signer;
