//! Paths of the workspace's binaries, built by `cargo build --workspace` before the tests run.

use std::path::PathBuf;

/// Path of a workspace binary (`slipway`, `slipway-agent`, `slipway-controller`) in the
/// target dir this test runs from. Panics with a hint when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` before the tests (deploy/test does)",
        path.display()
    );
    path
}
