//! Slipway host agent: verify signed releases, pull, run beside the old container, health-check,
//! swap traffic, bake, discard. The reconcile loop is in `reconcile`, one deploy in `swap`.
#![forbid(unsafe_code)]

pub mod defaults;
pub mod source;
pub mod state;
