//! Every default of the controller, with the reason it is what it is.

use std::time::Duration;

/// Where `slipway-controller serve` listens without `listen` in the config: loopback only.
pub const LISTEN: &str = "127.0.0.1:7440";
/// A long-poll waits this long for a change before answering "not modified".
pub const LONG_POLL_WAIT: Duration = Duration::from_secs(30);
/// Upper bound on `?wait=`: proxies and load balancers commonly cut idle requests at 60 s.
pub const LONG_POLL_MAX_WAIT: Duration = Duration::from_secs(55);
/// Releases are signed for a week: long enough to ride out a controller outage.
pub const RELEASE_VALIDITY: Duration = crate::signer::DEFAULT_VALIDITY;
/// Re-sign a live release once less than this remains, so hosts never hold an expired one.
pub const RESIGN_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);
/// How often the re-signer looks for releases close to expiry.
pub const RESIGN_INTERVAL: Duration = Duration::from_secs(60);
/// In-flight requests get this long to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A registry that has not answered a tag lookup by then is treated as down.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Platform picked out of a multi-platform index: our hosts are amd64 Linux VMs.
pub const PLATFORM_OS: &str = "linux";
pub const PLATFORM_ARCH: &str = "amd64";
/// SQLite connections: one writer at a time anyway; a few readers for long-poll wake-ups.
pub const SQLITE_POOL: u32 = 8;
/// Tries of a write transaction's BEGIN that SQLite refuses at once as busy.
pub const SQLITE_BEGIN_ATTEMPTS: u32 = 8;
/// Concurrent `release` calls that lose the race for a seq retry this many times.
pub const SEQ_RETRIES: u32 = 8;
/// Rows `GET /v1/audit` returns without `?limit=`.
pub const AUDIT_LIMIT: u32 = 100;
/// Request bodies above this are refused: an app spec or release request is a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// Request heads above this get 431. It is also each connection's read buffer (hyper's
/// minimum): with a larger limit hyper doubles the buffer of a reused connection to 16 KiB,
/// and every parked long-poll holds one.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// `last_seen` of a host is rewritten at most this often, so polls do not queue on the writer.
pub const LAST_SEEN_GRAIN: Duration = Duration::from_secs(10);
/// A host of a started wave that has not polled or reported for this long counts as failed:
/// well above the longest long-poll (55 s) plus the `last_seen` grain.
pub const ROLLOUT_SILENT_AFTER: Duration = Duration::from_secs(90);
/// A host silent (no poll, no report) this long is down: left out of new rollouts and not
/// counted as a rollout failure. Long enough that a reboot or a network blip is not "down".
pub const HOST_DOWN_AFTER: Duration = Duration::from_secs(600);
/// Added to a release's health deadline, drain and bake before a host of a started wave that
/// is not live counts as failed: time to pull the image.
pub const ROLLOUT_DEPLOY_MARGIN: Duration = Duration::from_secs(120);
/// How often the driving controller looks at the rollouts in progress.
pub const ROLLOUT_TICK: Duration = Duration::from_millis(500);
/// A long-poll waits at most this long for its view of the rollouts to catch up with a release
/// just published on this controller.
pub const ROLLOUT_VIEW_CATCH_UP: Duration = Duration::from_secs(2);
/// "rollout planned" names every host of the plan up to this many; a larger plan is logged
/// by wave sizes (its hosts at debug level).
pub const LOGGED_WAVE_HOSTS: usize = 200;

// The `slipway` CLI.

/// `--wait` / `--watch` read the rollout this often: quick enough to follow a host's phases.
pub const WATCH_POLL: Duration = Duration::from_secs(1);
/// `--wait` gives up after this long without `--timeout`: a CI job must not hang forever,
/// and most rollouts (pulls, health checks, bake windows) finish well within it.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed reads in a row after which `--wait` / `--watch` give up on the controller.
pub const WATCH_MAX_ERRORS: u32 = 10;

// The event log (`GET /v1/events`).

/// Events are kept a week: long enough to look back over a weekend's deploys.
pub const EVENTS_KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 3600);
/// ... and at most this many rows, so a busy fleet cannot fill the disk with them.
pub const EVENTS_KEEP_ROWS: u64 = 100_000;
/// How often old events are pruned.
pub const EVENTS_PRUNE_INTERVAL: Duration = Duration::from_secs(600);
/// Stored events one read returns: a page of backlog before an SSE stream goes live.
pub const EVENTS_PAGE: u32 = 1000;
/// Live events buffered per subscriber; a slower one re-reads what it missed from the store.
pub const EVENTS_BUFFER: usize = 1024;

// Remote logs (`GET /v1/apps/{app}/logs`, `src/logs.rs`).

/// An agent that has not started its upload by then is not going to: the request is
/// withdrawn and the reader told. Agents poll for log requests all the time, so a healthy
/// one answers in milliseconds.
pub const LOG_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A log long-poll waits this long for a request before answering an empty list.
pub const LOG_POLL_WAIT: Duration = Duration::from_secs(25);
/// A host whose agent ended its last log long-poll this recently is still listening (it is
/// between two polls).
pub const LOG_POLL_GRACE: Duration = Duration::from_secs(15);
/// Frames buffered per reader: past it the agents' uploads wait (TCP back-pressure), so a
/// slow reader holds no more than this in memory.
pub const LOG_BUFFER_FRAMES: usize = 256;
/// Longest frame an agent may send (a line is split well below it by the agent).
pub const LOG_FRAME_MAX: usize = 64 * 1024;
/// A reader with nothing new gets a keep-alive this often, so a reader gone is noticed (the
/// write fails) and the uploads it started end.
pub const LOG_KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Without `--follow`, an upload that is not done by then is cut: it sends at most the
/// rotated and current files, which take seconds.
pub const LOG_UPLOAD_MAX: Duration = Duration::from_secs(120);
/// Log requests one host may have waiting or streaming at once.
pub const LOG_REQUESTS_PER_HOST: usize = 16;
