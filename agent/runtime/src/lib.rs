//! Slipway container runtime: OCI bundle, runc, CNI network namespaces, adoption, discard.
