//! Slipway controller.
