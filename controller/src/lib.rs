//! Slipway controller: where releases are born. A tag becomes a digest once ([`resolve`]), is
//! signed ([`signer`], [`release`]), stored forever ([`store`]) and reaches the right hosts
//! ([`publish`], [`api`]). The `slipway` CLI lives in [`cli`].
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod defaults;
pub mod error;
pub mod events;
pub mod gitops;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod publish;
pub mod release;
pub mod resign;
pub mod resolve;
pub mod rollout;
pub mod secrets;
pub mod server;
pub mod signer;
pub mod store;
pub mod ui;
