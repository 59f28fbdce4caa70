//! `slipway` subcommands, one module each. Offline: `keygen`, `trust`, `release sign`.
//! Online (against a controller, see [`client`]): `app`, `release`, `rollback`, `status`,
//! `hosts`, `history`, `token`, `audit`, `secret`, `logs`; [`watch`] follows a rollout (`--wait`, `--watch`).
pub mod app;
pub mod cells;
pub mod client;
pub mod events;
pub mod hosts;
pub mod keygen;
pub mod logs;
pub mod release;
pub mod rollout;
pub mod secret;
pub mod status;
pub mod token;
pub mod trust;
pub mod watch;
