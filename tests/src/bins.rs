//! Paths of the workspace's binaries, built by `cargo build --workspace` before the tests run.

use std::path::PathBuf;

/// Path of a workspace binary (`slipway`, `slipway-agent`, `slipway-controller`) in the
/// target dir this test runs from. Panics with a hint when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/<test>, a support binary from
    // target/<profile>/<bin>: the workspace's binaries are in target/<profile>.
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (deploy/test does)",
        path.display()
    );
    path
}
