//! Identifiers checked once, where they enter (parsing, deserializing), and trusted after:
//! app names, container ids and host ids. Each has one documented rule, because each becomes
//! a file name, a URL path segment, a metric label (and a container id also a netns and
//! cgroup name): plain lowercase ASCII, no `/`, no `..`, bounded length.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// An identifier that breaks its rule: which kind, the value, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{value}` is invalid: {reason}")]
pub struct IdError {
    /// `app`, `container id` or `host id`.
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Checks `s` against the rule shared by app names and container ids: `[a-z][a-z0-9-]*`, at
/// most `max` bytes.
fn check_plain(s: &str, max: usize, too_long: &'static str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > max {
        return Err(too_long);
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err("must start with a lowercase letter");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only lowercase letters, digits and `-`");
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn check(s: &str) -> Result<(), IdError> {
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(s).map_err(|reason| IdError {
                    kind: $kind,
                    value: s.escape_debug().to_string(),
                    reason,
                })
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::check(s)?;
                Ok(Self(s.to_string()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::check(&s)?;
                Ok(Self(s))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Ids are plain file names.
        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                self.0.as_ref()
            }
        }

        impl AsRef<std::ffi::OsStr> for $name {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.0.as_ref()
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id!(
    /// An app name: 1 to 48 of `[a-z0-9-]`, starting with a lowercase letter. It becomes
    /// part of container ids, file names, URL paths and metric labels.
    AppName,
    "app",
    |s| check_plain(s, 48, "must be 1 to 48 characters")
);

string_id!(
    /// A container id: 1 to 128 of `[a-z0-9-]`, starting with a lowercase letter; made by
    /// [`crate::Release::container_id`] as `<app>-<seq>-<short digest>`. It names a
    /// directory, a runc container, a netns, a cgroup and a proxy upstream.
    ContainerId,
    "container id",
    |s| check_plain(s, 128, "must be 1 to 128 characters")
);

string_id!(
    /// A host id: 1 to 64 of `[a-z0-9._-]`, starting with a letter or digit, like a
    /// hostname. It names a host in URL paths, tokens and rollout plans.
    HostId,
    "host id",
    |s| {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err("may hold only lowercase letters, digits, `.`, `_` and `-`");
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err("must start with a letter or digit");
        }
        Ok(())
    }
);

impl ContainerId {
    /// The id of release `seq` of `app` with image `digest`: `<app>-<seq>-<short digest>`,
    /// valid by construction (an app name, digits and lowercase hex fit the rule).
    pub fn for_release(app: &AppName, seq: u64, digest: &crate::Digest) -> Self {
        Self(format!("{app}-{seq}-{}", digest.short()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn app_names() {
        for ok in ["web", "a", "web-2", &"a".repeat(48)] {
            assert!(ok.parse::<AppName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "2web",
            "-web",
            "web_1",
            "we b",
            "web/x",
            &"a".repeat(49),
        ] {
            assert!(bad.parse::<AppName>().is_err(), "{bad}");
        }
        let e = "Bad Name".parse::<AppName>().unwrap_err().to_string();
        assert_eq!(
            e,
            "app `Bad Name` is invalid: must start with a lowercase letter"
        );
    }

    #[test]
    fn container_ids() {
        assert!("web-12-0123456789ab".parse::<ContainerId>().is_ok());
        for bad in [
            "",
            "Web-1",
            "1web",
            "../x",
            "web.1",
            "web_1",
            &"a".repeat(129),
        ] {
            assert!(bad.parse::<ContainerId>().is_err(), "{bad}");
        }
        let d: crate::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let id = ContainerId::for_release(&"web".parse().unwrap(), 7, &d);
        assert_eq!(id, "web-7-abababababab");
        assert_eq!(id.as_str().parse::<ContainerId>().unwrap(), id);
    }

    #[test]
    fn host_ids() {
        for ok in ["h1", "host-1.lan", "10.0.0.1", "a_b"] {
            assert!(ok.parse::<HostId>().is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-h", "H1", "h/1", &"h".repeat(65)] {
            assert!(bad.parse::<HostId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn validated_when_deserialized_and_ergonomic() {
        let a: AppName = serde_json::from_str(r#""web""#).unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), r#""web""#);
        let e = serde_json::from_str::<AppName>(r#""Web""#).unwrap_err();
        assert!(e.to_string().contains("app `Web` is invalid"), "{e}");
        // Borrow<str>: maps keyed by id are looked up by &str.
        let m: BTreeMap<AppName, u32> = [(a.clone(), 1)].into();
        assert_eq!(m.get("web"), Some(&1));
        assert_eq!(a, "web");
        assert_eq!("web", a);
        assert_eq!(String::from("web"), a);
        assert!(a.starts_with('w'));
        assert_eq!(format!("{a}/{a:?}"), "web/\"web\"");
    }
}
