//! Slipway host agent.
