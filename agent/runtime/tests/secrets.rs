//! Secrets in a container, on real runc: env values and read-only files served from the
//! container's own tmpfs, which also holds its config.json; nothing of them in the state dir
//! or the runc root on disk; the tmpfs goes with the container, and adoption sweeps one a
//! crash left behind. Needs root, runc, CNI plugins, busybox-static.

mod common;

use common::*;
use slipway_runtime::secrets::Zeroizing;
use slipway_runtime::{ContainerSecrets, ContainerSpec, SecretEnv, SecretMount};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const ENV_VALUE: &str = "s3cr3t-env-9f1c4d";
const FILE_VALUE: &str = "s3cr3t-file-77ab02";

fn secrets() -> ContainerSecrets {
    ContainerSecrets {
        env: vec![SecretEnv {
            var: "DB_PASSWORD".into(),
            name: "db".into(),
            value: Zeroizing::new(ENV_VALUE.as_bytes().to_vec()),
        }],
        files: vec![SecretMount {
            name: "tls".into(),
            path: "/run/secrets/tls.key".into(),
            mode: 0o440,
            value: Zeroizing::new(FILE_VALUE.as_bytes().to_vec()),
        }],
    }
}

fn sh(s: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), s.into()]
}

/// Files under `root` on its own file system (mounts below it, such as the tmpfs and the
/// overlay root, are other file systems) that contain `needle`.
fn on_disk_with(root: &Path, needle: &[u8]) -> Vec<String> {
    let dev = std::fs::metadata(root).unwrap().dev();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

fn tmpfs_at(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&dir.as_str()) && f.get(2) == Some(&"tmpfs")
        })
}

#[tokio::test]
async fn secrets_reach_the_container_from_its_own_tmpfs_and_leave_with_it() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let release = fx.release("sec", 1, "");
    let id = release.container_id().unwrap();
    let layers = fx.layers("hi");
    let image = image_config(|c| c.user("www".to_string()));
    let s = secrets();
    let info = rt
        .start(ContainerSpec {
            id: id.clone(),
            release: &release,
            image_config: &image,
            layer_dirs: &layers,
            secrets: Some(&s),
        })
        .await
        .unwrap();
    assert_eq!(get(info.address, Duration::from_secs(5)).unwrap(), "hi");

    let run = |cmd: &str| {
        let rt = &rt;
        let id = id.clone();
        let cmd = cmd.to_string();
        async move {
            let out = rt
                .exec(&id, &sh(&cmd), Duration::from_secs(5))
                .await
                .unwrap();
            (
                out.code,
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        }
    };
    // The process env and the file, as the app (user www) sees them.
    assert_eq!(run("echo -n \"$DB_PASSWORD\"").await, (0, ENV_VALUE.into()));
    assert_eq!(
        run("cat /run/secrets/tls.key").await,
        (0, FILE_VALUE.into())
    );
    assert_eq!(
        run("stat -c '%a %u' /run/secrets/tls.key").await,
        (0, "440 33".into())
    );
    let (code, _) = run("echo x > /run/secrets/tls.key").await;
    assert_ne!(code, 0, "the secret file is writable");
    let (_, mounts) = run("grep ' /run/secrets/tls.key ' /proc/mounts").await;
    assert!(mounts.contains(" ro,"), "{mounts}");

    // On the host: config.json and the file on the container's tmpfs, nothing on disk.
    let sdir = rt.secrets_dir(&id);
    assert!(tmpfs_at(&sdir), "no tmpfs at {}", sdir.display());
    assert_eq!(std::fs::metadata(&sdir).unwrap().mode() & 0o777, 0o700);
    assert!(sdir.join("config.json").is_file());
    assert!(!fx.cfg.state_dir.join(&id).join("config.json").exists());
    for needle in [ENV_VALUE, FILE_VALUE] {
        let found = on_disk_with(fx.dir.path(), needle.as_bytes());
        assert!(found.is_empty(), "{needle} on disk: {found:?}");
    }

    rt.discard(&id, Duration::from_secs(2)).await.unwrap();
    assert!(!sdir.exists(), "secrets dir left after discard");
    assert!(!tmpfs_at(&sdir));
    fx.assert_clean(&id);
}

#[tokio::test]
async fn adoption_sweeps_a_secrets_tmpfs_no_container_owns() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let left = rt.secrets_dir("gone-3-0123456789ab");
    std::fs::create_dir_all(&left).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&left)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(left.join("config.json"), ENV_VALUE).unwrap();
    let report = rt.adopt(&|_| true).await.unwrap();
    assert!(
        report.cleaned.contains(&"gone-3-0123456789ab".to_string()),
        "{report:?}"
    );
    assert!(!left.exists());
    assert!(!tmpfs_at(&left));
}
