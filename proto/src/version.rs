//! Version skew between a controller and its agents. A controller serves agents one minor
//! version older or newer than itself (same major), so a fleet upgrades one side at a time:
//! controller first, then the agents, or the other way round.

use std::cmp::Ordering;
use std::fmt;

/// The version every binary of this build reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How far one version is from another, in minor versions of the same major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skew {
    Same,
    /// Theirs is this many minor versions older.
    Older(u64),
    /// Theirs is this many minor versions newer.
    Newer(u64),
}

impl Skew {
    /// Within what a controller serves: at most one minor version either way.
    pub fn supported(self) -> bool {
        !matches!(self, Skew::Older(n) | Skew::Newer(n) if n > 1)
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::Same => f.write_str("same minor"),
            Skew::Older(n) => write!(f, "-{n} minor"),
            Skew::Newer(n) => write!(f, "+{n} minor"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkewError {
    #[error("`{0}` is not a version (MAJOR.MINOR.PATCH)")]
    Unparsable(String),
    #[error("version {theirs} has another major version than {ours}")]
    Major { ours: String, theirs: String },
}

fn major_minor(v: &str) -> Option<(u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    match parts.next() {
        None => Some((major, minor)),
        Some(p) if p.parse::<u64>().is_ok() && parts.next().is_none() => Some((major, minor)),
        Some(_) => None,
    }
}

/// The skew of `theirs` against `ours`.
pub fn skew(ours: &str, theirs: &str) -> Result<Skew, SkewError> {
    let (om, on) = major_minor(ours).ok_or_else(|| SkewError::Unparsable(ours.into()))?;
    let (tm, tn) = major_minor(theirs).ok_or_else(|| SkewError::Unparsable(theirs.into()))?;
    if om != tm {
        return Err(SkewError::Major {
            ours: ours.into(),
            theirs: theirs.into(),
        });
    }
    Ok(match tn.cmp(&on) {
        Ordering::Equal => Skew::Same,
        Ordering::Less => Skew::Older(on - tn),
        Ordering::Greater => Skew::Newer(tn - on),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minor_either_way_is_served() {
        assert_eq!(skew("0.4.2", "0.4.0"), Ok(Skew::Same));
        assert_eq!(skew("0.4.2", "0.3.9"), Ok(Skew::Older(1)));
        assert_eq!(skew("0.4.2", "0.5.0-rc.1"), Ok(Skew::Newer(1)));
        assert!(Skew::Older(1).supported() && Skew::Newer(1).supported());
        assert!(!skew("0.4.2", "0.2.0").unwrap().supported());
        assert!(!skew("0.4.2", "0.6.1").unwrap().supported());
        assert_eq!(skew("0.4.2", "0.6.1").unwrap().to_string(), "+2 minor");
        assert!(matches!(
            skew("1.0.0", "0.9.0"),
            Err(SkewError::Major { .. })
        ));
        assert!(matches!(
            skew("1.0.0", "one"),
            Err(SkewError::Unparsable(_))
        ));
        assert!(matches!(
            skew("1.0.0", "1.0.0.0"),
            Err(SkewError::Unparsable(_))
        ));
    }
}
