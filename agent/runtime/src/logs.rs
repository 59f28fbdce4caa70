//! Container output: stdout and stderr go straight from the container to append-only files
//! in its dir (so output survives agent restarts), capped by copy-and-truncate rotation into
//! `<name>.1`.

use std::path::{Path, PathBuf};

pub const STDOUT: &str = "stdout.log";
pub const STDERR: &str = "stderr.log";

/// (stdout, stderr) log files of the container whose dir is `dir`.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(STDOUT), dir.join(STDERR))
}

/// Opens a log file for the container to append to.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// When `path` is over `max` bytes: copy it to `<path>.1` (replacing the older copy) and
/// truncate it. The writer appends (`O_APPEND`), so it carries on at the new end; output
/// written between copy and truncate is lost, as with logrotate's copytruncate.
pub fn rotate(path: &Path, max: u64) -> std::io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let tmp = path.with_extension("log.1.tmp");
    std::fs::copy(path, &tmp)?;
    std::fs::rename(&tmp, &old)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// Removes a container's log files (current and rotated).
pub fn remove(dir: &Path) {
    for name in [STDOUT, STDERR] {
        let _ = std::fs::remove_file(dir.join(name));
        let _ = std::fs::remove_file(dir.join(format!("{name}.1")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_caps_the_file_and_keeps_one_old_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (out, _) = paths(dir.path());
        let mut f = open_append(&out).unwrap();
        f.write_all(&[b'a'; 100]).unwrap();
        assert!(!rotate(&out, 100).unwrap());
        f.write_all(b"b").unwrap();
        assert!(rotate(&out, 100).unwrap());
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        assert_eq!(
            std::fs::read(dir.path().join("stdout.log.1"))
                .unwrap()
                .len(),
            101
        );
        // The writer keeps appending at the (new) end, not at its old offset.
        f.write_all(b"after").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"after");
    }
}
