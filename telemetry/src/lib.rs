//! Logging, set up the same way in every Slipway binary: `SLIPWAY_LOG` (or `RUST_LOG`) is an
//! env filter (default `info`), `SLIPWAY_LOG_FORMAT=json` switches to one JSON object a line.
#![forbid(unsafe_code)]

use tracing_subscriber::EnvFilter;

/// Default filter when neither `SLIPWAY_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber, writing to stderr. `json` forces JSON lines.
pub fn init(json: bool) {
    let filter = std::env::var("SLIPWAY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| DEFAULT_FILTER.to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = json || std::env::var("SLIPWAY_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
