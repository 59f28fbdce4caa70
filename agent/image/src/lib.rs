//! Slipway image pipeline: pull by digest, verify, store layers once, unpack safely, overlay rootfs, GC.
