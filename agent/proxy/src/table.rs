//! The routing table on disk: written atomically (temp + fsync + rename + dir fsync) and
//! restored on start. A corrupt file is renamed aside and reported, never silently emptied.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use slipway_proto::{EdgeSpec, Protocol};

use crate::error::ProxyError;
use crate::pause::Mode;
use crate::upstream::Upstream;

/// Format version of the state file.
pub(crate) const TABLE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteTable {
    pub version: u32,
    pub routes: Vec<RouteEntry>,
}

/// One app's persisted route: its public port, protocol and current upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteEntry {
    pub app: String,
    pub listen: u16,
    pub protocol: Protocol,
    pub upstream: Upstream,
    #[serde(default, skip_serializing_if = "EdgeSpec::is_default")]
    pub edge: EdgeSpec,
    /// Paused or stopped apps stay so across restarts.
    #[serde(default, skip_serializing_if = "Mode::is_running")]
    pub mode: Mode,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            version: TABLE_VERSION,
            routes: Vec::new(),
        }
    }
}

/// What loading found.
#[derive(Debug)]
pub(crate) enum Loaded {
    Missing,
    Table(RouteTable),
    /// The file did not parse; it now lives at `moved_to`.
    Corrupt {
        reason: String,
        moved_to: PathBuf,
    },
}

/// Why a routing table file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TableError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("version {0} (this proxy reads {TABLE_VERSION})")]
    Version(u32),
    #[error(transparent)]
    Id(#[from] slipway_proto::IdError),
    #[error("app `{0}` listed twice")]
    Duplicate(String),
}

fn parse(bytes: &[u8]) -> Result<RouteTable, TableError> {
    let t: RouteTable = serde_json::from_slice(bytes)?;
    if t.version != TABLE_VERSION {
        return Err(TableError::Version(t.version));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &t.routes {
        r.app.parse::<slipway_proto::AppName>()?;
        if !seen.insert(&r.app) {
            return Err(TableError::Duplicate(r.app.clone()));
        }
    }
    Ok(t)
}

/// Reads the table. Unreadable (not missing) files are an error: starting empty would
/// overwrite them at the next change.
pub(crate) fn load(path: &Path) -> Result<Loaded, ProxyError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(source) => {
            return Err(ProxyError::State {
                path: path.to_owned(),
                source,
            })
        }
    };
    match parse(&bytes) {
        Ok(t) => Ok(Loaded::Table(t)),
        Err(reason) => {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".corrupt-{ts}"));
            let moved_to = PathBuf::from(name);
            fs::rename(path, &moved_to).map_err(|source| ProxyError::State {
                path: path.to_owned(),
                source,
            })?;
            Ok(Loaded::Corrupt {
                reason: reason.to_string(),
                moved_to,
            })
        }
    }
}

/// Writes the table atomically: a crash leaves either the old or the new file, whole.
pub(crate) fn save(path: &Path, table: &RouteTable) -> Result<(), ProxyError> {
    let err = |source| ProxyError::State {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let body = serde_json::to_vec_pretty(table).expect("route table serializes");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable {
            version: TABLE_VERSION,
            routes: vec![RouteEntry {
                app: "web".into(),
                listen: 8080,
                protocol: Protocol::Http,
                upstream: Upstream {
                    id: "c1".parse().unwrap(),
                    addr: "10.1.0.2:80".parse().unwrap(),
                },
                edge: EdgeSpec::default(),
                mode: Mode::default(),
            }],
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/routes.json");
        save(&path, &table()).unwrap();
        match load(&path).unwrap() {
            Loaded::Table(t) => assert_eq!(t, table()),
            other => panic!("{other:?}"),
        }
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(&dir.path().join("routes.json")).unwrap(),
            Loaded::Missing
        ));
    }

    #[test]
    fn corrupt_file_is_moved_aside_with_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        fs::write(&path, b"{\"version\":1,\"routes\":[{\"app\":").unwrap();
        match load(&path).unwrap() {
            Loaded::Corrupt { reason, moved_to } => {
                assert!(reason.contains("EOF"), "{reason}");
                assert!(!path.exists());
                assert!(moved_to.to_string_lossy().contains("routes.json.corrupt-"));
                assert_eq!(
                    fs::read(&moved_to).unwrap(),
                    b"{\"version\":1,\"routes\":[{\"app\":"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_app_or_bad_version_is_corrupt() {
        let mut t = table();
        t.routes.push(t.routes[0].clone());
        assert!(parse(&serde_json::to_vec(&t).unwrap())
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let mut t = table();
        t.version = 9;
        assert!(parse(&serde_json::to_vec(&t).unwrap())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
