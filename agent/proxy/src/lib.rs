//! Slipway data plane: HTTP/TCP proxy with atomic upstream swap, verified drain, metrics.
