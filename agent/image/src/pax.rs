//! What a tar entry's PAX extended header adds to the ustar header: xattrs and a
//! nanosecond mtime. File capabilities (`security.capability`) are kept so that images like
//! ping or nginx's setcap builds work; `trusted.*` would let a layer forge overlayfs
//! metadata (opaque dirs, redirects) and any other `security.*` would set LSM labels on the
//! host, so both are refused.

use rustix::fs::{AtFlags, Timestamps, CWD};
use std::io::{self, Read};
use std::path::Path;

/// The xattr that holds a file's capabilities (`setcap`).
pub const CAPABILITY_XATTR: &str = "security.capability";
/// Sizes of the kernel's `vfs_cap_data` revisions 1, 2 and 3 (3 adds a namespace root uid).
const CAPABILITY_SIZES: [usize; 3] = [12, 20, 24];

/// An entry's modification time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

/// The PAX facts of one entry we act on.
#[derive(Debug, Default)]
pub struct Pax {
    /// `security.capability` to set on a regular file (after chown, which clears it).
    pub capability: Option<Vec<u8>>,
    /// PAX `mtime` (seconds with a fraction), finer than the ustar header's whole seconds.
    pub mtime: Option<Mtime>,
}

/// Reads the PAX header of `entry`; `Err` names a refused xattr.
pub fn read<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Ok(pax);
    };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        if key == "mtime" {
            pax.mtime = std::str::from_utf8(ext.value_bytes())
                .ok()
                .and_then(parse_mtime);
            continue;
        }
        let name = key
            .strip_prefix("SCHILY.xattr.")
            .or_else(|| key.strip_prefix("LIBARCHIVE.xattr."));
        let Some(name) = name else { continue };
        if name == CAPABILITY_XATTR {
            let value = ext.value_bytes();
            if !CAPABILITY_SIZES.contains(&value.len()) {
                return Err(format!(
                    "entry `{shown}` carries a malformed {CAPABILITY_XATTR} ({} bytes)",
                    value.len()
                ));
            }
            pax.capability = Some(value.to_vec());
        } else if name.starts_with("trusted.") || name.starts_with("security.") {
            return Err(format!(
                "entry `{shown}` carries xattr `{name}`; trusted.* and security.* xattrs \
                 other than {CAPABILITY_XATTR} are refused"
            ));
        }
    }
    Ok(pax)
}

/// Parses a PAX time: `SECONDS[.FRACTION]`, possibly negative.
pub fn parse_mtime(s: &str) -> Option<Mtime> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let mut nanos: u32 = digits.parse().ok()?;
    let mut secs = secs;
    if whole.starts_with('-') && nanos > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some(Mtime { secs, nanos })
}

/// Sets the mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, mtime: Mtime) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: mtime.secs,
        tv_nsec: mtime.nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_keep_nanoseconds() {
        let m = |secs, nanos| Some(Mtime { secs, nanos });
        assert_eq!(
            parse_mtime("1700000000.123456789"),
            m(1_700_000_000, 123_456_789)
        );
        assert_eq!(parse_mtime("1700000000.5"), m(1_700_000_000, 500_000_000));
        assert_eq!(parse_mtime("1700000000"), m(1_700_000_000, 0));
        assert_eq!(parse_mtime("12.1234567891"), m(12, 123_456_789));
        assert_eq!(parse_mtime("-1.25"), m(-2, 750_000_000));
        assert_eq!(parse_mtime("x.1"), None);
        assert_eq!(parse_mtime("1.x"), None);
    }
}
