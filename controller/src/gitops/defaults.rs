//! Every default of GitOps, with the reason it is what it is.

use std::time::Duration;

/// The branch that holds the desired state unless `[gitops] branch` says otherwise.
pub const BRANCH: &str = "main";
/// Directory of the repository with one directory per app.
pub const APPS_PATH: &str = "apps";
/// Poll even without webhooks: a missed webhook delays a release by at most this.
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Polling faster than this only loads the git server; use webhooks for speed.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// A git command (fetch of a large history over a slow link) gives up after this.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// First retry after a failed fetch; doubles up to the poll interval.
pub const RETRY_START: Duration = Duration::from_secs(1);
/// Webhook bodies above this are refused (413): we only read `ref` from them, and GitHub's
/// push payloads stay far below it (at most 20 commits are listed).
pub const WEBHOOK_MAX_BODY: usize = 1024 * 1024;
/// Delivery ids remembered to reject replays; older ones are forgotten first.
pub const DELIVERIES_KEPT: usize = 10_000;
/// Username sent with a bare token in `credentials_file`; GitHub and GitLab accept any name
/// with a token, and this is the one GitHub documents for app tokens.
pub const TOKEN_USER: &str = "x-access-token";
/// File names inside an app's directory.
pub const APP_FILE: &str = "app.toml";
pub const IMAGE_FILE: &str = "image";
/// Largest `app.toml` or `image` file read from the repository.
pub const MAX_FILE: u64 = 256 * 1024;
