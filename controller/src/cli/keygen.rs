//! `slipway keygen --out DIR`: a new Ed25519 release-signing key pair.

use anyhow::Context;
use slipway_proto::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Directory for `release.key` (PKCS#8 PEM, mode 0600) and `release.pub`; created if absent.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key_path = args.out.join("release.key");
    let pub_path = args.out.join("release.pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite a key (move it away first)",
                p.display()
            );
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let key = SigningKey::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    f.write_all(key.to_pem().as_bytes())?;
    f.sync_all()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&pub_path)
        .with_context(|| format!("creating {}", pub_path.display()))?;
    f.write_all(key.public_key().to_pem().as_bytes())?;
    f.sync_all()?;
    println!("{}", key.public_key().id());
    eprintln!("wrote {} and {}", key_path.display(), pub_path.display());
    Ok(())
}
