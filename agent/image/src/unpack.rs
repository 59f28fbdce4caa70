//! Safe layer extraction. Each layer unpacks into its own fresh, private directory (so no
//! other writer can race us); every entry path is cleaned and every parent is `lstat`ed, so
//! nothing is written outside that directory or through a symlink. OCI whiteouts become
//! overlayfs whiteouts: `.wh.<name>` a char 0:0 device, `.wh..wh..opq` the xattr
//! `trusted.overlay.opaque=y` on the directory. The uncompressed stream is hashed and must
//! equal the config's diff_id. Device nodes (base rootfs tarballs carry `/dev/console`) are
//! skipped and counted, never created: the runtime gives containers their own `/dev`.

use crate::defaults;
use crate::error::ImageError;
use crate::manifest::Compression;
use crate::pax::{self, Mtime};
use rustix::fs::{FileType, Mode, CWD};
use slipway_proto::Digest;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to hide a lower directory's content.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Caps on what one layer may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_unpacked_bytes: u64,
    pub max_entries: u64,
    pub max_path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: defaults::MAX_UNPACKED_BYTES,
            max_entries: defaults::MAX_ENTRIES,
            max_path_bytes: defaults::MAX_PATH_BYTES,
        }
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpacked {
    pub uncompressed_bytes: u64,
    pub entries: u64,
    /// Char and block device entries skipped.
    pub devices_skipped: u64,
}

/// Unpacks the layer read from `blob` into the empty directory `dest`, checking the
/// uncompressed stream against `diff_id`. `layer` names the layer in errors.
pub fn unpack_layer(
    blob: impl Read,
    compression: Compression,
    layer: &Digest,
    diff_id: &Digest,
    dest: &Path,
    limits: &Limits,
) -> Result<Unpacked, ImageError> {
    let fail = |reason: String| ImageError::Layer {
        digest: layer.clone(),
        reason,
    };
    let input = BufReader::with_capacity(1 << 18, blob);
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| fail(format!("zstd stream: {e}")))?,
        ),
    };
    let mut hashed = HashingReader::new(decompressed, limits.max_unpacked_bytes);
    let mut ex = Extractor {
        root: dest,
        limits,
        entries: 0,
        devices_skipped: 0,
        dir_times: Vec::new(),
        root_mode_set: false,
    };
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let entries = archive.entries().map_err(|e| fail(stream_reason(&e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| fail(stream_reason(&e)))?;
            ex.entry(entry).map_err(|r| fail(r.0))?;
        }
    }
    // The tar end marker may come before the end of the stream: hash the rest too.
    io::copy(&mut hashed, &mut io::sink()).map_err(|e| fail(stream_reason(&e)))?;
    let (seen, total) = hashed.finish();
    if &seen != diff_id {
        return Err(fail(format!(
            "uncompressed content hashes to {seen}, but the config's diff_id is {diff_id}"
        )));
    }
    ex.finish().map_err(|r| fail(r.0))?;
    if ex.devices_skipped > 0 {
        tracing::info!(%layer, devices = ex.devices_skipped, "skipped device nodes in the layer");
    }
    Ok(Unpacked {
        uncompressed_bytes: total,
        entries: ex.entries,
        devices_skipped: ex.devices_skipped,
    })
}

fn stream_reason(e: &io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<CapExceeded>()) {
        Some(cap) => cap.to_string(),
        None => format!("reading the layer stream: {e}"),
    }
}

/// A refusal reason for one entry.
struct Refused(String);

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused(e.to_string())
    }
}

struct Extractor<'a> {
    root: &'a Path,
    limits: &'a Limits,
    entries: u64,
    devices_skipped: u64,
    dir_times: Vec<(PathBuf, Mtime)>,
    root_mode_set: bool,
}

impl Extractor<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Refused> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Refused(format!(
                "has more than {} entries",
                self.limits.max_entries
            )));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let rel = clean(&raw, self.limits.max_path_bytes)
            .map_err(|why| Refused(format!("entry `{shown}` {why}")))?;
        let pax = pax::read(&mut entry, &shown).map_err(Refused)?;
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mtime = pax.mtime.unwrap_or(Mtime {
            secs: h.mtime().unwrap_or(0) as i64,
            nanos: 0,
        });

        let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        if name == OPAQUE_MARKER.as_bytes() {
            let dir = rel.parent().unwrap_or(Path::new(""));
            self.ensure_dir(dir, &shown)?;
            set_opaque(&self.root.join(dir), &shown)?;
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(Refused(format!("whiteout `{shown}` names no valid entry")));
            }
            let target = rel.with_file_name(OsStr::from_bytes(hidden));
            self.parents(&target, &shown)?;
            let path = self.root.join(&target);
            if let Ok(m) = path.symlink_metadata() {
                // The OCI image spec: a whiteout applies to lower layers only; an entry of
                // the same layer stays. A directory must then hide what lower layers hold.
                if m.is_dir() {
                    set_opaque(&path, &shown)?;
                }
                return Ok(());
            }
            rustix::fs::mknodat(CWD, &path, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| Refused(format!("whiteout `{shown}`: creating 0:0 device: {e}")))?;
            return Ok(());
        }

        if rel.as_os_str().is_empty() {
            // `./`: the layer root itself.
            if kind != EntryType::Directory {
                return Err(Refused(format!(
                    "entry `{shown}` would replace the layer root"
                )));
            }
            std::os::unix::fs::lchown(self.root, Some(uid as u32), Some(gid as u32))?;
            std::fs::set_permissions(self.root, std::fs::Permissions::from_mode(mode))?;
            self.root_mode_set = true;
            self.dir_times.push((self.root.to_path_buf(), mtime));
            return Ok(());
        }

        if matches!(kind, EntryType::Char | EntryType::Block) {
            // Skipped, not created: a device node in the store would be a way into host
            // hardware; the runtime mounts the container's own /dev.
            let (maj, min) = (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            );
            tracing::debug!(entry = %shown, "skipping {} {maj}:{min}", kind_name(kind));
            self.devices_skipped += 1;
            return Ok(());
        }
        self.parents(&rel, &shown)?;
        let path = self.root.join(&rel);
        let existing = path.symlink_metadata().ok();
        let existing_dir = existing.as_ref().is_some_and(|m| m.is_dir());
        if existing_dir && kind != EntryType::Directory {
            return Err(Refused(format!(
                "entry `{shown}` would replace a directory with a {}",
                kind_name(kind)
            )));
        }
        // A 0:0 char device here is a whiteout of this layer (devices are never created).
        let replaces_whiteout = existing
            .as_ref()
            .is_some_and(|m| m.file_type().is_char_device());
        if existing.is_some() && !existing_dir {
            std::fs::remove_file(&path)?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc_o_nofollow())
                    .open(&path)?;
                io::copy(&mut entry, &mut f)?;
                rustix::fs::fchown(&f, Some(uid_of(uid)), Some(gid_of(gid)))
                    .map_err(io::Error::from)?;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                // After chown, which clears file capabilities.
                if let Some(cap) = &pax.capability {
                    rustix::fs::fsetxattr(
                        &f,
                        pax::CAPABILITY_XATTR,
                        cap,
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|e| {
                        Refused(format!(
                            "entry `{shown}`: setting {}: {e}",
                            pax::CAPABILITY_XATTR
                        ))
                    })?;
                }
                pax::set_mtime(&path, mtime)?;
            }
            EntryType::Directory => {
                if !existing_dir {
                    std::fs::create_dir(&path)?;
                }
                if replaces_whiteout {
                    set_opaque(&path, &shown)?;
                }
                std::os::unix::fs::lchown(&path, Some(uid as u32), Some(gid as u32))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                self.dir_times.push((path, mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Refused(format!("symlink `{shown}` has no target")))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)?;
                std::os::unix::fs::lchown(&path, Some(uid as u32), Some(gid as u32))?;
                pax::set_mtime(&path, mtime)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Refused(format!("hardlink `{shown}` has no target")))?;
                let target_shown = String::from_utf8_lossy(&target).into_owned();
                let target_rel = clean(&target, self.limits.max_path_bytes).map_err(|why| {
                    Refused(format!(
                        "hardlink `{shown}` -> `{target_shown}`: target {why}"
                    ))
                })?;
                self.parents_exist(&target_rel, &shown)?;
                let target_path = self.root.join(&target_rel);
                match target_path.symlink_metadata() {
                    Ok(m) if m.is_dir() => {
                        return Err(Refused(format!(
                            "hardlink `{shown}` -> `{target_shown}` points at a directory"
                        )))
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(Refused(format!(
                            "hardlink `{shown}` -> `{target_shown}`: target is not in the layer"
                        )))
                    }
                }
                // link(2) does not follow a symlink target: the link stays inside the layer.
                std::fs::hard_link(&target_path, &path)?;
            }
            EntryType::Fifo => {
                rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(mode), 0)
                    .map_err(io::Error::from)?;
                std::os::unix::fs::lchown(&path, Some(uid as u32), Some(gid as u32))?;
            }
            other => {
                return Err(Refused(format!(
                    "entry `{shown}` has unsupported type {}",
                    kind_name(other)
                )))
            }
        }
        Ok(())
    }

    /// Makes sure every parent of `rel` is a real directory inside the root (creating
    /// missing ones); a symlink or a file on the way is refused.
    fn parents(&self, rel: &Path, shown: &str) -> Result<(), Refused> {
        match rel.parent() {
            Some(p) => self.ensure_dir(p, shown),
            None => Ok(()),
        }
    }

    fn ensure_dir(&self, rel: &Path, shown: &str) -> Result<(), Refused> {
        let mut cur = self.root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            match cur.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Refused(format!(
                        "entry `{shown}` writes through symlink `{}`",
                        cur.strip_prefix(self.root).unwrap_or(&cur).display()
                    )))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Refused(format!(
                        "entry `{shown}` has non-directory parent `{}`",
                        cur.strip_prefix(self.root).unwrap_or(&cur).display()
                    )))
                }
                Err(_) => {
                    std::fs::create_dir(&cur)?;
                    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))?;
                }
            }
        }
        Ok(())
    }

    /// Like `parents`, but creates nothing: for hardlink targets.
    fn parents_exist(&self, rel: &Path, shown: &str) -> Result<(), Refused> {
        let mut cur = self.root.to_path_buf();
        for c in rel.parent().unwrap_or(Path::new("")).components() {
            cur.push(c);
            match cur.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(Refused(format!(
                        "hardlink `{shown}` resolves through `{}`, which is not a directory of the layer",
                        cur.strip_prefix(self.root).unwrap_or(&cur).display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Directory mtimes last (creating children changes them), deepest first.
    fn finish(&mut self) -> Result<(), Refused> {
        if !self.root_mode_set {
            std::fs::set_permissions(self.root, std::fs::Permissions::from_mode(0o755))?;
        }
        for (dir, mtime) in self.dir_times.iter().rev() {
            pax::set_mtime(dir, *mtime)?;
        }
        Ok(())
    }
}

/// Cleans an entry path: relative, no `..`, `.` dropped, within the length cap. The empty
/// path is the layer root.
fn clean(raw: &[u8], max: usize) -> Result<PathBuf, &'static str> {
    if raw.len() > max {
        return Err("has a path longer than the limit");
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("escapes the root (`..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(out)
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous => "file",
        EntryType::Directory => "directory",
        EntryType::Symlink => "symlink",
        EntryType::Link => "hardlink",
        EntryType::Char => "char device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::GNUSparse => "GNU sparse file",
        _ => "special entry",
    }
}

fn uid_of(id: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(id as u32)
}

fn gid_of(id: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(id as u32)
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn set_opaque(dir: &Path, shown: &str) -> Result<(), Refused> {
    rustix::fs::lsetxattr(dir, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
        .map_err(|e| Refused(format!("entry `{shown}`: setting {OPAQUE_XATTR}: {e}")))
}

/// Marker inside the io::Error when the uncompressed cap is hit.
#[derive(Debug)]
struct CapExceeded(u64);

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expands beyond {} uncompressed bytes (a decompression bomb?)",
            self.0
        )
    }
}

impl std::error::Error for CapExceeded {}

/// Hashes and counts what passes through; fails once more than `cap` bytes did.
struct HashingReader<R> {
    inner: R,
    ctx: ring::digest::Context,
    count: u64,
    cap: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R, cap: u64) -> Self {
        HashingReader {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            count: 0,
            cap,
        }
    }

    fn finish(self) -> (Digest, u64) {
        let hex = hex::encode(self.ctx.finish());
        (Digest::from_hex(&hex).expect("sha256 hex"), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.cap {
            return Err(io::Error::other(CapExceeded(self.cap)));
        }
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

/// Opens a stored blob for unpacking.
pub(crate) fn open_blob(path: &Path) -> Result<File, ImageError> {
    File::open(path).map_err(ImageError::io(path))
}

#[cfg(test)]
mod tests;
