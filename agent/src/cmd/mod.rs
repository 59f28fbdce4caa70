//! One module per `slipway-agent` subcommand.
pub mod join;
pub mod logs;
pub mod proxy;
pub mod ps;
pub mod pull;
pub mod run;
pub mod status;
pub mod verify;
pub mod volume;
