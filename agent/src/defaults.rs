//! Agent defaults, each with the reason it is what it is.

use std::time::Duration;

/// Where the agent keeps its state (releases, images, containers), as FHS suggests.
pub const STATE_DIR: &str = "/var/lib/slipway";
/// Trust file location when the config names none.
pub const TRUST_FILE: &str = "/etc/slipway/trust.toml";
/// Directory source: signed release files dropped here are deployed (like static pods).
pub const RELEASES_DIR: &str = "/etc/slipway/releases";
/// Control socket of `slipway-agent proxy`.
pub const PROXY_SOCKET: &str = "/run/slipway/proxy.sock";
/// The directory source is re-read this often, and at once on every change inotify reports.
pub const DIR_POLL: Duration = Duration::from_millis(250);
/// Releases per app whose images stay cached for an instant rollback.
pub const KEEP_RELEASES: usize = 3;
/// Deploy records kept per app for `slipway-agent status`.
pub const HISTORY: usize = 10;
/// Until a new container first answers healthy, its next probe follows after this (doubling
/// up to the spec's interval): the app is usually up milliseconds after `runc start`.
pub const FIRST_PROBE_RETRY: Duration = Duration::from_millis(10);
/// During bake, health and error rate are checked this often.
pub const BAKE_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Fewer requests than this in the bake window are too few to judge an error rate.
pub const BAKE_MIN_REQUESTS: u64 = 20;
/// Failed health probes in a row during bake that count as unhealthy.
pub const BAKE_UNHEALTHY_THRESHOLD: u32 = 3;
/// Attempts at pointing the proxy at a new upstream before the switch counts as failed.
pub const SWITCH_ATTEMPTS: u32 = 5;
/// Retry delay after an error talking to the proxy or the runtime.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How often the agent checks whether a live release's signature has expired (a cheap look
/// at the state; a second keeps the stale mark prompt).
pub const STALE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A stale app is warned about when it turns stale and again this often: visible in any log
/// window without flooding it during a long controller outage.
pub const STALE_WARN_EVERY: Duration = Duration::from_secs(3600);

/// Where the agent serves `GET /metrics` unless agent.toml says `metrics_addr`.
pub const METRICS_ADDR: &str = "127.0.0.1:9464";

// Container logs (`slipway-agent logs`, and `slipway logs` through the controller).

/// How often a followed log is looked at for new output.
pub const LOG_FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
/// How often a follow looks for a newer container of the app (a new release went live).
pub const LOG_FOLLOW_REPICK: Duration = Duration::from_secs(2);
/// Bytes read from a log file at a time: what one stream holds in memory.
pub const LOG_CHUNK: usize = 16 * 1024;
/// Longer lines reach the controller split at this length (its frames are capped at 64 KiB).
pub const LOG_LINE_MAX: usize = 16 * 1024;
/// One log long-poll asks the controller to wait this long for a request.
pub const LOG_POLL_WAIT: Duration = Duration::from_secs(25);
/// Uploads at once; a request past them is answered with an error.
pub const LOG_UPLOADS_MAX: usize = 16;
/// A follow with nothing new sends a keep-alive this often, so an upload the controller
/// dropped is noticed (the write fails) and ends.
pub const LOG_KEEP_ALIVE: Duration = Duration::from_secs(5);
