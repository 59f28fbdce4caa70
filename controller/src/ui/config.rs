//! `[ui]` in controller.toml: the dashboard.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// A dashboard login lasts this long; then the browser is sent back to the login form.
    #[serde(default = "d_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            session_ttl: d_session_ttl(),
        }
    }
}

fn d_session_ttl() -> Duration {
    super::defaults::SESSION_TTL
}
