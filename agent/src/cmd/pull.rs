//! `slipway-agent pull`: pull an image by digest into a store and unpack its layers; prints
//! what was fetched vs found cached. Progress bars per layer on a terminal only.

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use slipway_image::{Progress, Puller, RegistryConfig, Store};
use slipway_proto::{Digest, ImageRef};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(clap::Args)]
pub struct Args {
    /// Image pinned by digest: `REGISTRY/REPOSITORY@sha256:<64 hex>` (tags are refused).
    image: String,
    /// Store directory (blobs, unpacked layers).
    #[arg(long)]
    store: PathBuf,
    /// Registry `HOST:PORT` to reach over plain HTTP instead of HTTPS (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registry: Vec<String>,
    /// agent.toml whose `[registry]` section (credentials, config.json, CA and client
    /// certificates per registry) this pull uses.
    #[arg(long, value_name = "AGENT_TOML")]
    config: Option<PathBuf>,
    /// A docker `config.json` (auths, credHelpers, credsStore); overrides the config's.
    #[arg(long, value_name = "CONFIG_JSON")]
    docker_config: Option<PathBuf>,
    /// Print the pull report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let image: ImageRef = args
        .image
        .parse()
        .with_context(|| format!("image `{}` refused", args.image))?;
    let store = Store::open(&args.store)
        .with_context(|| format!("opening store {}", args.store.display()))?;
    let mut cfg = match &args.config {
        Some(path) => slipway_agent::config::AgentConfig::load(path)?.registry,
        None => RegistryConfig::default(),
    };
    cfg.insecure.extend(args.insecure_registry);
    if let Some(path) = args.docker_config {
        cfg.docker_config = Some(path);
    }
    let mut puller = Puller::new(store, cfg);
    let bars = (!args.json && std::io::stderr().is_terminal()).then(Bars::new);
    if let Some(bars) = &bars {
        puller = puller.with_progress(Arc::new(bars.clone()));
    }
    let pulled = puller
        .pull(&image)
        .await
        .with_context(|| format!("pulling {image}"))?;
    if let Some(bars) = bars {
        bars.multi.clear().ok();
    }
    let r = &pulled.report;
    if args.json {
        let out = serde_json::json!({
            "image": image.to_string(),
            "manifest_digest": pulled.manifest_digest.to_string(),
            "layer_dirs": pulled.layer_dirs,
            "report": r,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("pulled {image}");
        println!("manifest {}", pulled.manifest_digest);
        for l in &r.layers {
            let what = if l.fetched { "fetched" } else { "cached " };
            println!("  {what} {} {:>12} bytes", l.digest, l.size);
        }
        println!(
            "layers: {} fetched, {} cached; {} bytes fetched in {:.2}s",
            r.layers_fetched, r.layers_cached, r.bytes_fetched, r.seconds
        );
    }
    Ok(())
}

/// One indicatif bar per layer.
#[derive(Clone)]
struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<Digest, ProgressBar>>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            bars: Arc::default(),
        }
    }

    fn bar(&self, layer: &Digest, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().expect("progress lock");
        bars.entry(layer.clone())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {bar:30} {bytes}/{total_bytes} {msg}")
                        .expect("static template"),
                );
                bar.set_prefix(layer.short().to_string());
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn layer_started(&self, layer: &Digest, size: u64) {
        self.bar(layer, size).set_message("downloading");
    }
    fn layer_bytes(&self, layer: &Digest, n: u64) {
        self.bar(layer, 0).inc(n);
    }
    fn layer_unpacking(&self, layer: &Digest) {
        self.bar(layer, 0).set_message("unpacking");
    }
    fn layer_done(&self, layer: &Digest) {
        self.bar(layer, 0).finish_with_message("done");
    }
    fn layer_cached(&self, layer: &Digest, size: u64) {
        let bar = self.bar(layer, size);
        bar.set_position(size);
        bar.finish_with_message("cached");
    }
}
