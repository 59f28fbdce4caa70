//! A tar writer for test layers that can also write what a well-behaved writer refuses
//! (`..`, absolute paths, device nodes, escaping links, `trusted.*` xattrs): entry names are
//! written into the header verbatim. Deterministic: uid/gid 0, mtime fixed.

use tar::{EntryType, Header};

/// Fixed mtime so equal content gives equal layer digests.
const MTIME: u64 = 1_700_000_000;

/// Builds an uncompressed tar stream entry by entry.
pub struct TarBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Adds directory entries for every parent of `path` (e.g. `a/b/c` adds `a/`, `a/b/`).
    pub fn parents(mut self, path: &str) -> Self {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for i in 1..parts.len() {
            self = self.dir(&parts[..i].join("/"), 0o755);
        }
        self
    }

    pub fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.entry(path, EntryType::Regular, mode, data, None, &[])
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.entry(path, EntryType::Directory, mode, &[], None, &[])
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(path, EntryType::Symlink, 0o777, &[], Some(target), &[])
    }

    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(path, EntryType::Link, 0o644, &[], Some(target), &[])
    }

    /// A character device `major:minor` (0:0 is an overlayfs whiteout; others are hostile).
    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = header(path, EntryType::Char, 0o644, 0);
        h.set_device_major(major).expect("ustar header");
        h.set_device_minor(minor).expect("ustar header");
        h.set_cksum();
        self.builder.append(&h, &[][..]).expect("tar into memory");
        self
    }

    /// An OCI whiteout for `path` (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), &[], 0o644)
    }

    /// An OCI opaque-directory marker for `dir` (`dir/.wh..wh..opq`).
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), &[], 0o644)
    }

    /// A regular file carrying extended attributes (PAX `SCHILY.xattr.*` records).
    pub fn file_with_xattrs(self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        self.entry(path, EntryType::Regular, 0o644, data, None, xattrs)
    }

    /// A regular file with raw PAX records (`mtime`, `SCHILY.xattr.NAME`, ...).
    pub fn file_with_pax(self, path: &str, data: &[u8], mode: u32, pax: &[(&str, &[u8])]) -> Self {
        self.pax_entry(path, EntryType::Regular, mode, data, None, pax)
    }

    /// Any entry, name and link target written verbatim.
    pub fn entry(
        self,
        path: &str,
        kind: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&str>,
        xattrs: &[(&str, &[u8])],
    ) -> Self {
        let keys: Vec<String> = xattrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        let pax: Vec<(&str, &[u8])> = keys
            .iter()
            .zip(xattrs)
            .map(|(k, (_, v))| (k.as_str(), *v))
            .collect();
        self.pax_entry(path, kind, mode, data, link, &pax)
    }

    /// Any entry after a PAX header with these records (none: no PAX header).
    pub fn pax_entry(
        mut self,
        path: &str,
        kind: EntryType,
        mode: u32,
        data: &[u8],
        link: Option<&str>,
        pax: &[(&str, &[u8])],
    ) -> Self {
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (k, v) in pax {
                let mut rec = Vec::new();
                rec.extend_from_slice(format!(" {k}=").as_bytes());
                rec.extend_from_slice(v);
                rec.push(b'\n');
                // The length prefix counts itself.
                let mut len = rec.len() + 1;
                while format!("{len}").len() + rec.len() != len {
                    len += 1;
                }
                records.extend_from_slice(format!("{len}").as_bytes());
                records.extend_from_slice(&rec);
            }
            let h = header(
                "PaxHeaders/x",
                EntryType::XHeader,
                0o644,
                records.len() as u64,
            );
            self.builder
                .append(&h, &records[..])
                .expect("tar into memory");
        }
        let mut h = header(path, kind, mode, data.len() as u64);
        if let Some(target) = link {
            set_bytes(&mut h.as_old_mut().linkname, target);
            h.set_cksum();
        }
        self.builder.append(&h, data).expect("tar into memory");
        self
    }

    /// The finished tar stream (with its end-of-archive blocks).
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("tar into memory")
    }
}

fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    let path = if kind == EntryType::Directory && !path.ends_with('/') {
        format!("{path}/")
    } else {
        path.to_string()
    };
    set_bytes(&mut h.as_old_mut().name, &path);
    h.set_cksum();
    h
}

fn set_bytes(field: &mut [u8; 100], value: &str) {
    assert!(
        value.len() < field.len(),
        "test tar names are limited to 99 bytes: `{value}`"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}
