//! `slipway-agent status`: per app, the live release, phase, last error and recent deploys,
//! whether the live release is stale (served past its signature's expiry), and the names
//! and versions of the secrets it runs with (never values: the agent keeps none).

use slipway_agent::config::AgentConfig;
use slipway_agent::expiry::expired_at;
use slipway_agent::state::StateFile;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    /// Agent configuration (TOML), to find the state directory.
    #[arg(long, short, default_value = "/etc/slipway/agent.toml")]
    config: PathBuf,
    /// Print the raw state as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = AgentConfig::load(&args.config)?;
    let st = StateFile::load(&cfg.state_dir)?;
    let now = SystemTime::now();
    if args.json {
        // The state as stored, plus `stale` on apps whose live release's signature expired.
        let mut apps = serde_json::to_value(&st.apps)?;
        for (app, s) in &st.apps {
            if let Some(rel) = s.live_seq.and_then(|q| s.releases.get(&q)) {
                if !rel.spec.secret_versions.is_empty() {
                    apps[app]["secrets"] = serde_json::json!(secret_versions(rel));
                }
            }
            if let (Some(at), Some(seq)) = (expired_at(s, now), s.live_seq) {
                apps[app]["stale"] = serde_json::json!({
                    "seq": seq,
                    "expired_at": humantime::format_rfc3339_seconds(at).to_string(),
                });
            }
        }
        println!("{}", serde_json::to_string_pretty(&apps)?);
        return Ok(());
    }
    if st.apps.is_empty() {
        println!("no apps");
    }
    for (app, s) in &st.apps {
        let mut phase = s.phase.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        if expired_at(s, now).is_some() {
            phase.push_str(" (stale)");
        }
        let live = match (&s.live_seq, &s.live_container) {
            (Some(seq), Some(c)) => format!("seq {seq} ({c})"),
            _ => "none".into(),
        };
        println!(
            "{app}: {phase}, live {live}, accepted seq {}",
            s.accepted_seq
        );
        if let Some(img) = &s.live_image {
            println!("  image {img}");
        }
        if let Some(rel) = s.live_seq.and_then(|q| s.releases.get(&q)) {
            let when = humantime::format_rfc3339_seconds(rel.expires);
            if expired_at(s, now).is_some() {
                println!("  signature EXPIRED at {when}: still serving (stale); no change is accepted until a freshly signed release arrives");
            } else {
                println!("  signature valid until {when}");
            }
            if !rel.spec.secret_versions.is_empty() {
                let list: Vec<String> = secret_versions(rel)
                    .iter()
                    .map(|(n, v)| format!("{n} v{v}"))
                    .collect();
                println!("  secrets {}", list.join(", "));
            }
        }
        if let Some(e) = &s.last_error {
            println!("  last error: {e}");
        }
        for r in &s.history {
            let took = r
                .finished
                .and_then(|f| f.duration_since(r.started).ok())
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "in progress".into());
            let ago = SystemTime::now()
                .duration_since(r.started)
                .map(|d| {
                    humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                        .to_string()
                })
                .unwrap_or_default();
            let swap = r
                .swap_ms
                .map(|m| format!(", switched after {m} ms"))
                .unwrap_or_default();
            println!(
                "  seq {:>4} {:<12} {took}{swap}, {ago} ago{}",
                r.seq,
                r.outcome.to_string(),
                r.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Secret name -> version the release pins (the values are never in the agent's state).
fn secret_versions(rel: &slipway_proto::Release) -> std::collections::BTreeMap<&str, u64> {
    rel.spec
        .secret_versions
        .iter()
        .map(|(n, p)| (n.as_str(), p.version))
        .collect()
}
