//! runc's version, and the known container escapes it lacks fixes for.

use crate::defaults;

/// `(major, minor, patch)` from `runc --version` (`runc version 1.1.5+ds1`).
pub fn parse(output: &str) -> Option<(u32, u32, u32)> {
    let line = output.lines().find(|l| l.starts_with("runc version"))?;
    let v = line.trim_start_matches("runc version").trim();
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>());
    Some((
        it.next()?.ok()?,
        it.next()?.ok()?,
        it.next().and_then(|p| p.ok()).unwrap_or(0),
    ))
}

/// CVE ids of the known escapes runc `v` predates the upstream fixes for.
pub fn missing_fixes(v: (u32, u32, u32)) -> Vec<&'static str> {
    let mut out = Vec::new();
    if v < defaults::RUNC_FIX_2024 {
        out.push("CVE-2024-21626");
    }
    let newest = defaults::RUNC_FIX_2025[defaults::RUNC_FIX_2025.len() - 1];
    let fixed_2025 = v >= newest
        || defaults::RUNC_FIX_2025
            .iter()
            .any(|f| (v.0, v.1) == (f.0, f.1) && v >= *f);
    if !fixed_2025 {
        out.extend(["CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_their_missing_fixes() {
        let v = parse("runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2-dev\n").unwrap();
        assert_eq!(v, (1, 1, 5));
        assert_eq!(missing_fixes(v).len(), 4);
        assert_eq!(
            missing_fixes((1, 1, 12)),
            ["CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"]
        );
        assert!(missing_fixes((1, 2, 8)).is_empty());
        assert_eq!(missing_fixes((1, 3, 2)).len(), 3);
        assert!(missing_fixes((1, 3, 3)).is_empty() && missing_fixes((1, 4, 0)).is_empty());
        assert_eq!(parse("nonsense"), None);
    }
}
