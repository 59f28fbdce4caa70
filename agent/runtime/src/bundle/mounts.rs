//! The container's mounts: the kernel file systems (with `/proc` nosuid,noexec,nodev), a
//! tmpfs `/tmp` for a read-only root, and the bind mounts the runtime prepared.

use crate::defaults;
use crate::error::BundleError;
use oci_spec::runtime::{Mount, MountBuilder};
use std::path::{Path, PathBuf};

/// A bind mount of a host file or dir into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Every mount of the container, kernel file systems first, binds in the given order.
pub fn mounts(id: &str, read_only: bool, binds: &[Bind]) -> Result<Vec<Mount>, BundleError> {
    let err = |e| BundleError::Spec(e, id.to_string());
    let mut out: Vec<Mount> = oci_spec::runtime::get_default_mounts()
        .into_iter()
        .map(|mut m| {
            if m.destination() == Path::new("/proc") {
                m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
            }
            m
        })
        .collect();
    if read_only {
        out.push(
            MountBuilder::default()
                .destination("/tmp")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec![
                    "nosuid".into(),
                    "nodev".into(),
                    "mode=1777".into(),
                    defaults::TMP_SIZE.into(),
                ])
                .build()
                .map_err(err)?,
        );
    }
    for b in binds {
        let opts = vec![
            "rbind".to_string(),
            "nosuid".into(),
            "nodev".into(),
            if b.read_only { "ro" } else { "rw" }.into(),
        ];
        out.push(
            MountBuilder::default()
                .destination(b.destination.clone())
                .typ("bind")
                .source(b.source.clone())
                .options(opts)
                .build()
                .map_err(err)?,
        );
    }
    Ok(out)
}
