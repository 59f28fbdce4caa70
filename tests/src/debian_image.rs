//! Real images from Debian packages, built by real builders: `mmdebstrap` makes a rootfs
//! tarball from packages, `umoci` makes it an OCI image with a config (Cmd, ExposedPorts,
//! Volumes, StopSignal, User), `skopeo` pushes it to a test registry. A built image is kept as
//! an OCI layout under [`CACHE_DIR`], keyed by a hash of its recipe, so only the first run
//! (minutes; needs the Debian mirror) builds it.

use anyhow::{bail, Context};
use slipway_proto::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Where built images are kept between test runs.
pub const CACHE_DIR: &str = "/var/cache/slipway-tests/images";
/// The Debian release images are built from.
pub const SUITE: &str = "bookworm";
/// The mirror `mmdebstrap` fetches packages from (override: `SLIPWAY_DEBIAN_MIRROR`).
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Bump to rebuild every cached image when the build steps change.
const BUILD_VERSION: u32 = 4;

/// One build at a time: mmdebstrap is CPU- and network-heavy, and two builds of one recipe
/// would only race.
static BUILDING: Mutex<()> = Mutex::new(());

/// What an image is made of.
#[derive(Debug, Clone, Default)]
pub struct Recipe {
    /// Repository name the image is pushed as.
    pub name: &'static str,
    /// Debian packages on top of `minbase`.
    pub packages: &'static [&'static str],
    /// Shell run in the finished root before packing (`$1` is the root's path).
    pub hooks: &'static [&'static str],
    pub cmd: &'static [&'static str],
    pub expose: &'static [&'static str],
    pub volumes: &'static [&'static str],
    pub stop_signal: Option<&'static str>,
    pub user: Option<&'static str>,
}

/// Tools the build needs, each with the Debian package that has it.
const TOOLS: [(&str, &str); 3] = [
    ("mmdebstrap", "mmdebstrap"),
    ("umoci", "umoci"),
    ("skopeo", "skopeo"),
];

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Recipe {
    /// Hash of everything that shapes the image.
    pub fn key(&self) -> String {
        let text = format!("v{BUILD_VERSION} {SUITE} {self:?}");
        format!("{}-{}", self.name, &Digest::of(text.as_bytes()).hex()[..16])
    }

    /// The image's OCI layout dir (tag `latest`), built first when not cached.
    pub fn layout(&self) -> anyhow::Result<PathBuf> {
        let dir = Path::new(CACHE_DIR).join(self.key());
        if dir.join("index.json").exists() {
            return Ok(dir);
        }
        let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        if dir.join("index.json").exists() {
            return Ok(dir);
        }
        for (tool, package) in TOOLS {
            if run(Command::new("which").arg(tool)).is_err() {
                bail!(
                    "`{tool}` is missing: apt-get install -y {package} (deploy/install-deps does)"
                );
            }
        }
        std::fs::create_dir_all(CACHE_DIR)?;
        let tmp =
            Path::new(CACHE_DIR).join(format!(".{}.build-{}", self.key(), std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let result = self.build(&tmp);
        if result.is_ok() {
            std::fs::rename(tmp.join("oci"), &dir)
                .with_context(|| format!("moving the built image to {}", dir.display()))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        result.map(|_| dir)
    }

    fn build(&self, tmp: &Path) -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        let rootfs = tmp.join("rootfs.tar");
        let mirror = std::env::var("SLIPWAY_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.into());
        let mut mm = Command::new("mmdebstrap");
        mm.args([
            "--quiet",
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
        ]);
        if !self.packages.is_empty() {
            mm.arg(format!("--include={}", self.packages.join(",")));
        }
        // Smaller images: no docs, man pages, locales or apt lists.
        for p in [
            "/usr/share/doc/*",
            "/usr/share/man/*",
            "/usr/share/locale/*",
        ] {
            mm.arg(format!("--dpkgopt=path-exclude={p}"));
        }
        for h in self.hooks {
            mm.arg(format!("--customize-hook={h}"));
        }
        mm.arg("--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin");
        mm.arg(SUITE).arg(&rootfs).arg(&mirror);
        run(&mut mm).context("mmdebstrap (needs the Debian mirror)")?;
        // The device nodes mmdebstrap puts under /dev stay, as in images from other builders:
        // the agent skips them (every container gets its own /dev) and counts them.

        let oci = tmp.join("oci");
        let image = format!("{}:latest", oci.display());
        run(Command::new("umoci").arg("init").arg("--layout").arg(&oci))?;
        run(Command::new("umoci").args(["new", "--image", &image]))?;
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&rootfs))?;
        let mut config = Command::new("umoci");
        config.args(["config", "--image", &image, "--os", "linux"]);
        config.args(["--architecture", crate::image::host_arch()]);
        for c in self.cmd {
            config.args(["--config.cmd", c]);
        }
        for p in self.expose {
            config.args(["--config.exposedports", p]);
        }
        for v in self.volumes {
            config.args(["--config.volume", v]);
        }
        if let Some(s) = self.stop_signal {
            config.args(["--config.stopsignal", s]);
        }
        if let Some(u) = self.user {
            config.args(["--config.user", u]);
        }
        run(&mut config)?;
        run(Command::new("umoci").args(["gc", "--layout"]).arg(&oci))?;
        eprintln!(
            "built image {} from Debian packages in {:.0?}",
            self.key(),
            t.elapsed()
        );
        Ok(())
    }

    /// Builds (or takes from the cache) and pushes the image; returns `registry/name@digest`.
    pub fn push(&self, registry: &str) -> anyhow::Result<String> {
        self.push_tag(registry, "latest")
    }

    /// Like [`Recipe::push`], but a second digest of the same image: its config carries the
    /// label `slipway.test.variant=<variant>` (for rollbacks to an older digest).
    pub fn push_variant(&self, registry: &str, variant: &str) -> anyhow::Result<String> {
        let layout = self.layout()?;
        if !run(Command::new("umoci").args(["ls", "--layout"]).arg(&layout))?
            .lines()
            .any(|t| t == variant)
        {
            let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
            run(Command::new("umoci")
                .args(["config", "--image"])
                .arg(format!("{}:latest", layout.display()))
                .args(["--tag", variant, "--config.label"])
                .arg(format!("slipway.test.variant={variant}")))?;
        }
        self.push_tag(registry, variant)
    }

    fn push_tag(&self, registry: &str, tag: &str) -> anyhow::Result<String> {
        let layout = self.layout()?;
        let digest_file = tempfile::NamedTempFile::new()?;
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(digest_file.path())
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{registry}/{}:{tag}", self.name)))
        .with_context(|| format!("pushing {} to {registry}", self.name))?;
        let digest = std::fs::read_to_string(digest_file.path())?;
        Ok(format!("{registry}/{}@{}", self.name, digest.trim()))
    }
}
