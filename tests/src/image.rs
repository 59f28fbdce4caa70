//! Small OCI images built in Rust, and pushed to a registry over the distribution HTTP API.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let reg = slipway_tests::registry::Registry::start()?;
//! let image = slipway_tests::image::busybox_httpd_image("hello v1");
//! let pushed = image.push(reg.addr(), "demo/web", "v1")?;
//! println!("{}", pushed.image_ref()); // 127.0.0.1:PORT/demo/web@sha256:...
//! # Ok(()) }
//! ```

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use slipway_proto::Digest;
use std::io::Write;
use std::sync::OnceLock;

mod distribution;
pub mod http;
mod tarball;

pub use distribution::{get_blob, get_manifest, push_blob, push_manifest};
pub use tarball::TarBuilder;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Where Debian's `busybox-static` installs its static binary.
pub const BUSYBOX_BIN: &str = "/bin/busybox";
/// Applets linked into the busybox layer.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "httpd", "nc", "cat", "echo", "ls", "sleep", "wget", "env", "true", "false", "ps",
    "kill", "mkdir", "rm", "touch", "id", "hostname", "ip", "printf", "test", "grep",
];

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One layer blob: the bytes as stored in the registry, and its digests.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    /// The blob as pushed (compressed, unless `Compression::None`).
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// sha256 of the uncompressed tar (goes into the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl Layer {
    /// A layer from an uncompressed tar stream.
    pub fn from_tar(tar: &[u8], compression: Compression) -> Layer {
        let (bytes, media_type) = match compression {
            Compression::None => (tar.to_vec(), MEDIA_LAYER_TAR),
            Compression::Gzip => {
                let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).expect("gzip into memory");
                (enc.finish().expect("gzip into memory"), MEDIA_LAYER_GZIP)
            }
            Compression::Zstd => (
                zstd::encode_all(tar, 3).expect("zstd into memory"),
                MEDIA_LAYER_ZSTD,
            ),
        };
        Layer {
            media_type: media_type.to_string(),
            digest: Digest::of(&bytes),
            diff_id: Digest::of(tar),
            bytes,
        }
    }

    /// A layer with arbitrary (possibly hostile or lying) bytes, media type and diff_id.
    pub fn raw(bytes: Vec<u8>, media_type: &str, diff_id: Digest) -> Layer {
        Layer {
            media_type: media_type.to_string(),
            digest: Digest::of(&bytes),
            diff_id,
            bytes,
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Builds an image: layers (base first) plus the runtime config.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    config: Value,
    os: String,
    arch: String,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An empty image for linux and this host's architecture.
    pub fn new() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            config: json!({ "Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "WorkingDir": "/" }),
            os: "linux".into(),
            arch: host_arch().into(),
        }
    }

    /// Adds a gzip layer holding regular files `(path, contents)` (parents created, mode 0644).
    pub fn layer_from_files(self, files: &[(&str, &[u8])]) -> Self {
        let mut tar = TarBuilder::new();
        for (path, data) in files {
            tar = tar.parents(path).file(path, data, 0o644);
        }
        self.layer(Layer::from_tar(&tar.finish(), Compression::Gzip))
    }

    /// Adds a gzip layer from a tar builder.
    pub fn layer_from_tar(self, tar: TarBuilder) -> Self {
        self.layer(Layer::from_tar(&tar.finish(), Compression::Gzip))
    }

    /// Adds a ready layer (any compression, or hostile bytes via [`Layer::raw`]).
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn cmd(mut self, argv: &[&str]) -> Self {
        self.config["Cmd"] = json!(argv);
        self
    }

    pub fn entrypoint(mut self, argv: &[&str]) -> Self {
        self.config["Entrypoint"] = json!(argv);
        self
    }

    pub fn env(mut self, var: &str) -> Self {
        self.config["Env"]
            .as_array_mut()
            .expect("Env is an array")
            .push(json!(var));
        self
    }

    /// Declares an exposed port, e.g. `"80/tcp"`.
    pub fn expose(mut self, port: &str) -> Self {
        if !self.config["ExposedPorts"].is_object() {
            self.config["ExposedPorts"] = json!({});
        }
        self.config["ExposedPorts"][port] = json!({});
        self
    }

    pub fn workdir(mut self, dir: &str) -> Self {
        self.config["WorkingDir"] = json!(dir);
        self
    }

    /// Overrides the platform written into the config (default: linux + host arch).
    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self
    }

    /// Serialises config and manifest.
    pub fn build(self) -> Image {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| l.diff_id.to_string()).collect();
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": self.arch,
            "os": self.os,
            "config": self.config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": self.layers.iter().map(|_| json!({"created_by": "slipway-tests"})).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config).expect("config serialises");
        let config_digest = Digest::of(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest.to_string(), "size": config.len() },
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size(),
            })).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("manifest serialises");
        Image {
            manifest_digest: Digest::of(&manifest),
            manifest,
            config_digest,
            config,
            layers: self.layers,
            os: self.os,
            arch: self.arch,
        }
    }
}

/// A built image: blobs and manifest bytes, ready to push.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub os: String,
    pub arch: String,
}

/// A blob as it sits in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedBlob {
    pub digest: Digest,
    pub size: u64,
}

/// What [`Image::push`] or [`Index::push`] put in the registry.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:PORT/repo/name`
    pub repository: String,
    /// Digest of the manifest (or index) as served.
    pub digest: Digest,
    pub config: Option<PushedBlob>,
    /// Layers, base first (empty for an index).
    pub layers: Vec<PushedBlob>,
}

impl Pushed {
    /// `127.0.0.1:PORT/repo/name@sha256:...`, the form releases and `slipway-agent pull` take.
    pub fn image_ref(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

impl Image {
    /// Pushes blobs and manifest to `registry_addr` (`127.0.0.1:PORT`) as `repo:tag`.
    pub fn push(&self, registry_addr: &str, repo: &str, tag: &str) -> anyhow::Result<Pushed> {
        let mut layers = Vec::new();
        for l in &self.layers {
            push_blob(registry_addr, repo, &l.bytes)?;
            layers.push(PushedBlob {
                digest: l.digest.clone(),
                size: l.size(),
            });
        }
        push_blob(registry_addr, repo, &self.config)?;
        let digest = push_manifest(registry_addr, repo, tag, MEDIA_MANIFEST, &self.manifest)?;
        Ok(Pushed {
            repository: format!("{registry_addr}/{repo}"),
            digest,
            config: Some(PushedBlob {
                digest: self.config_digest.clone(),
                size: self.config.len() as u64,
            }),
            layers,
        })
    }

    /// The manifest as a JSON value (for tests that tamper with it).
    pub fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest).expect("own manifest parses")
    }
}

/// A multi-platform image index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    images: Vec<Image>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an image; its platform in the index is the one in its config.
    pub fn image(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }

    /// The index document's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": self.images.iter().map(|i| json!({
                "mediaType": MEDIA_MANIFEST,
                "digest": i.manifest_digest.to_string(),
                "size": i.manifest.len(),
                "platform": { "os": i.os, "architecture": i.arch },
            })).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&index).expect("index serialises")
    }

    /// Pushes every image by digest, then the index as `repo:tag`.
    pub fn push(&self, registry_addr: &str, repo: &str, tag: &str) -> anyhow::Result<Pushed> {
        for i in &self.images {
            i.push(registry_addr, repo, &i.manifest_digest.to_string())?;
        }
        let digest = push_manifest(registry_addr, repo, tag, MEDIA_INDEX, &self.bytes())?;
        Ok(Pushed {
            repository: format!("{registry_addr}/{repo}"),
            digest,
            config: None,
            layers: Vec::new(),
        })
    }
}

/// The busybox layer: `/bin/busybox` plus applet symlinks and a minimal `/etc`. Built once.
pub fn busybox_layer() -> Layer {
    static LAYER: OnceLock<Layer> = OnceLock::new();
    LAYER
        .get_or_init(|| {
            let busybox = std::fs::read(BUSYBOX_BIN).unwrap_or_else(|e| {
                panic!("reading {BUSYBOX_BIN}: {e} (apt-get install -y busybox-static)")
            });
            let mut tar = TarBuilder::new()
                .dir("bin", 0o755)
                .file("bin/busybox", &busybox, 0o755);
            for applet in BUSYBOX_APPLETS {
                tar = tar.symlink(&format!("bin/{applet}"), "busybox");
            }
            let tar = tar
                .dir("etc", 0o755)
                .file(
                    "etc/passwd",
                    b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                    0o644,
                )
                .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
                .dir("tmp", 0o1777)
                .dir("proc", 0o755)
                .dir("sys", 0o755)
                .dir("dev", 0o755);
            Layer::from_tar(&tar.finish(), Compression::Gzip)
        })
        .clone()
}

/// A busybox httpd image serving `page_text` as `/www/index.html` on port 80. Two calls with
/// different text share the busybox layer and differ only in the `/www` layer.
pub fn busybox_httpd_image(page_text: &str) -> Image {
    let www =
        TarBuilder::new()
            .dir("www", 0o755)
            .file("www/index.html", page_text.as_bytes(), 0o644);
    ImageBuilder::new()
        .layer(busybox_layer())
        .layer_from_tar(www)
        .cmd(&["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"])
        .expose("80/tcp")
        .build()
}

/// The OCI architecture name of this host (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
