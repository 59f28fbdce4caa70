//! Slipway host agent: verify signed releases, pull, run beside the old container, health-check,
//! swap traffic, bake, discard. The reconcile loop is in [`reconcile`], one deploy in [`swap`].
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod defaults;
pub mod expiry;
pub mod health;
pub mod host_key;
pub mod logs;
pub mod metrics;
pub mod parts;
pub mod prefetch;
pub mod reconcile;
pub mod recover;
pub mod report;
pub mod secrets;
pub mod source;
pub mod state;
pub mod swap;
