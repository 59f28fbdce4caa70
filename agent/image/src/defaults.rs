//! Every default of the image pipeline, in one place, each with its reason.

use std::time::Duration;

/// Largest manifest or index accepted; real ones are a few KiB, so 4 MiB is generous.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config accepted; configs with long histories stay well under this.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// Largest compressed layer a descriptor may declare (anything above is "absurd").
pub const MAX_LAYER_BYTES: u64 = 16 << 30;
/// Most layers one image may have (Docker itself caps at 127).
pub const MAX_LAYERS: usize = 256;
/// Most uncompressed bytes one layer may expand to: stops gzip/zstd bombs.
pub const MAX_UNPACKED_BYTES: u64 = 32 << 30;
/// Most tar entries per layer: stops inode-exhaustion layers.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Longest entry path in bytes (Linux PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Layers downloaded at once: enough to fill a link without starving other agents' work.
pub const MAX_CONCURRENT_DOWNLOADS: usize = 4;
/// Attempts per blob or manifest before a network failure is final.
pub const RETRY_ATTEMPTS: u32 = 5;
/// First retry delay; doubles on every attempt.
pub const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(5);
/// Connect timeout for registry requests: a loopback or LAN registry answers in milliseconds.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout between two chunks: a stalled stream is retried (and resumed) instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Releases per app whose images GC keeps, for rollback without a pull.
pub const GC_KEEP_RELEASES_PER_APP: usize = 3;
/// Age after which GC removes leftovers in `tmp/` (an interrupted pull).
pub const GC_TMP_MIN_AGE: Duration = Duration::from_secs(3600);
/// Write buffer for blob downloads: fewer syscalls on fast links.
pub const DOWNLOAD_BUFFER_BYTES: usize = 1 << 20;
/// User-Agent sent to registries.
pub const USER_AGENT: &str = concat!("slipway/", env!("CARGO_PKG_VERSION"));
/// Lifetime of a registry token whose answer names none (the distribution token spec's 60 s).
pub const TOKEN_DEFAULT_TTL: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires, so none expires in flight.
pub const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// A registry session (HTTP client, connections, credentials, tokens) serves the pulls of
/// this long before credentials and TLS settings are looked up again; a failed pull drops
/// it at once.
pub const SESSION_REUSE: Duration = Duration::from_secs(60);
/// Longest a `docker-credential-*` helper may take (ECR's and GCR's call a cloud API).
pub const CREDENTIAL_HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// `client_id` sent with an identity (refresh) token to a registry's OAuth2 token endpoint.
pub const OAUTH_CLIENT_ID: &str = "slipway";

/// Layers of at most this many entries are made durable file by file (fsync each); bigger
/// ones with one syncfs of the store's filesystem.
pub const FSYNC_EACH_MAX_ENTRIES: u64 = 64;
