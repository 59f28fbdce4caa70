//! Slipway host agent library: configuration and the reconcile loop.
