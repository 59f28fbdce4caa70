//! Dashboard defaults.

use std::time::Duration;

/// A dashboard session lasts a working day; the token is checked on every request anyway.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
