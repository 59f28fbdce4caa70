//! Table cells as kubectl and nomad show them: digests shortened to 12 hex digits
//! (`sha256:ab12cd34ef56`), times as ages (`2m ago`, `in 6d`). `-o wide` shows both in full.

use std::time::{Duration, SystemTime};

/// Hex digits of a digest a table keeps: as `docker images` and kubectl do.
pub const SHORT_DIGEST: usize = 12;

/// `repo@sha256:<64 hex>` -> `repo@sha256:<12 hex>` (anything else unchanged), unless `wide`.
pub fn image(s: &str, wide: bool) -> String {
    if wide {
        return s.to_string();
    }
    match s.split_once("sha256:") {
        Some((head, hex)) if hex.len() > SHORT_DIGEST => {
            format!("{head}sha256:{}", &hex[..SHORT_DIGEST])
        }
        _ => s.to_string(),
    }
}

/// An RFC 3339 time as an age from now (`2m ago`, `in 6d`), unless `wide` or unparsable.
pub fn age(rfc3339: &str, wide: bool) -> String {
    match humantime::parse_rfc3339_weak(rfc3339) {
        Ok(t) if !wide => age_at(t, SystemTime::now()),
        _ => rfc3339.to_string(),
    }
}

fn age_at(t: SystemTime, now: SystemTime) -> String {
    let (d, past) = match now.duration_since(t) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let n = short(d);
    if past {
        format!("{n} ago")
    } else {
        format!("in {n}")
    }
}

/// `42s`, `5m`, `3h`, `6d`: the largest unit, as kubectl's AGE column.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_shorten_unless_wide() {
        let full = format!("reg:5000/web@sha256:{}", "ab12cd34ef56".repeat(5));
        assert_eq!(image(&full, false), "reg:5000/web@sha256:ab12cd34ef56");
        assert_eq!(image(&full, true), full);
        assert_eq!(image("reg/web:v1", false), "reg/web:v1");
    }

    #[test]
    fn ages_past_and_future() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(age_at(now - Duration::from_secs(125), now), "2m ago");
        assert_eq!(age_at(now - Duration::from_secs(5), now), "5s ago");
        assert_eq!(
            age_at(now + Duration::from_secs(6 * 86400 + 5), now),
            "in 6d"
        );
        assert_eq!(age("not a time", false), "not a time");
        assert_eq!(
            age("2025-06-01T12:00:00.000Z", true),
            "2025-06-01T12:00:00.000Z"
        );
    }
}
