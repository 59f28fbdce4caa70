//! The container's user: the image's `User` resolved to numeric ids with the image's own
//! `/etc/passwd` and `/etc/group`, plus the supplementary groups `/etc/group` lists it in.

use super::EtcFiles;
use crate::defaults;
use crate::error::BundleError;

/// Resolves the image's `User` (`uid`, `uid:gid`, `name`, `name:group`, ...) to numeric ids,
/// reading names from the image's own `/etc/passwd` and `/etc/group`.
pub fn user(
    image: &str,
    spec: &str,
    etc: &dyn EtcFiles,
) -> Result<(u32, u32, Vec<u32>), BundleError> {
    let bad = |reason: String| BundleError::User {
        image: image.to_string(),
        user: spec.escape_debug().to_string(),
        reason,
    };
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    if spec.contains('\0') || spec.len() > 256 {
        return Err(bad("is not a user name or id".into()));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = etc.read("passwd").unwrap_or_default();
    // passwd: name:x:uid:gid:...
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let (uid, pw_gid, name) = match numeric_id(u) {
        Some(r) => {
            let uid = r.map_err(|e| bad(e.to_string()))?;
            let entry = entries.iter().find(|f| f[2].parse() == Ok(uid));
            let gid = entry.and_then(|f| f[3].parse::<u32>().ok());
            (uid, gid, entry.map(|f| f[0]))
        }
        None => {
            let f = entries.iter().find(|f| f[0] == u).ok_or_else(|| {
                bad(format!(
                    "names user `{u}`, which is not in the image's /etc/passwd"
                ))
            })?;
            let uid =
                parse_id(f[2]).map_err(|e| bad(format!("resolves to uid `{}`: {e}", f[2])))?;
            let gid =
                parse_id(f[3]).map_err(|e| bad(format!("resolves to gid `{}`: {e}", f[3])))?;
            (uid, Some(gid), Some(u))
        }
    };
    let group = etc.read("group").unwrap_or_default();
    let gid = match g {
        None => pw_gid.unwrap_or(0),
        Some(g) => match numeric_id(g) {
            Some(r) => r.map_err(|e| bad(format!("group {e}")))?,
            None => {
                let f = group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .ok_or_else(|| {
                        bad(format!(
                            "names group `{g}`, which is not in the image's /etc/group"
                        ))
                    })?;
                parse_id(f[2]).map_err(|e| bad(format!("group resolves to `{}`: {e}", f[2])))?
            }
        },
    };
    if uid > defaults::MAX_ID || gid > defaults::MAX_ID {
        return Err(bad(format!("resolves to an id above {}", defaults::MAX_ID)));
    }
    Ok((uid, gid, supplementary(&group, name, gid)))
}

/// Groups whose `/etc/group` member list names `user` (as Docker adds them), without the
/// primary `gid`, in file order, each once.
fn supplementary(group: &str, user: Option<&str>, gid: u32) -> Vec<u32> {
    let Some(user) = user else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if f.len() < 4 || !f[3].split(',').any(|m| m.trim() == user) {
            continue;
        }
        if let Ok(g) = parse_id(f[2]) {
            if g != gid && !out.contains(&g) {
                out.push(g);
            }
        }
    }
    out
}

/// `Some` when `s` looks numeric (then it must be in range), `None` when it is a name.
fn numeric_id(s: &str) -> Option<Result<u32, &'static str>> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-')).then(|| parse_id(s))
}

fn parse_id(s: &str) -> Result<u32, &'static str> {
    match s.parse::<u64>() {
        Ok(n) if n <= defaults::MAX_ID as u64 => Ok(n as u32),
        Ok(_) => Err("is out of range (ids are 0..=2147483647)"),
        Err(_) => Err("is not a valid id (negative, empty or not a number)"),
    }
}
