//! Reading a container's output files: which container of an app, and where to start
//! (`--since` through the write-time index, `--tail` by counting lines back), across the
//! rotated copy and the current file, and on from there as the container writes
//! (copy-and-truncate rotation included).

use anyhow::Context;
use slipway_proto::api::logs::LogStream;
use slipway_runtime::logs;
use slipway_runtime::state::{container_dirs, Record, RecordPhase};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The container whose logs are shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub dir: PathBuf,
    pub id: String,
    pub seq: u64,
}

/// `app`'s running container with the highest seq, else its newest one (discarded containers
/// keep their recent logs); only release `seq`'s when given.
pub fn pick(state_dir: &Path, app: &str, seq: Option<u64>) -> anyhow::Result<Picked> {
    let mut found: Vec<(bool, u64, String, PathBuf)> = Vec::new();
    for (_, dir) in container_dirs(state_dir)? {
        if let Some(r) = Record::load(&dir)? {
            if r.app == app && seq.is_none_or(|s| s == r.seq) {
                let live = matches!(r.phase, RecordPhase::Created | RecordPhase::Started)
                    && r.exit_code.is_none();
                found.push((live, r.seq, r.id.to_string(), dir));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, seq, id, dir)| Picked { dir, id, seq })
        .with_context(|| match seq {
            Some(s) => format!("no container of app `{app}` seq {s} on this host"),
            None => format!("no container of app `{app}` on this host"),
        })
}

/// Where the backlog starts: output written since a time, and/or the last N lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<SystemTime>,
    pub tail: Option<u64>,
}

/// A byte range of one file, to be read.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// One of a container's two outputs. Reads are planned ([`LogReader::plan_backlog`],
/// [`LogReader::plan_new`]) and then taken in chunks ([`LogReader::read`]), so the caller
/// holds no more than one chunk at a time.
pub struct LogReader {
    pub stream: LogStream,
    path: PathBuf,
    /// How far into the current file has been planned.
    offset: u64,
    /// Inode of the rotated copy when last planned: a new one means the file was rotated
    /// (the current file may have grown past `offset` again since).
    rotated_ino: Option<u64>,
    plan: VecDeque<Segment>,
    file: Option<(PathBuf, std::fs::File)>,
}

/// How much of a file one backward step of `--tail` reads.
const TAIL_STEP: u64 = 64 * 1024;

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn ino_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl LogReader {
    pub fn new(dir: &Path, stream: LogStream) -> Self {
        let (out, err) = logs::paths(dir);
        Self {
            stream,
            path: match stream {
                LogStream::Stdout => out,
                LogStream::Stderr => err,
            },
            offset: 0,
            rotated_ino: None,
            plan: VecDeque::new(),
            file: None,
        }
    }

    /// Plans what is there now, cut to `window`: the rotated copy, then the current file.
    pub fn plan_backlog(&mut self, window: Window) -> std::io::Result<()> {
        let old = logs::rotated(&self.path);
        self.rotated_ino = ino_of(&old);
        self.file = None;
        let mut segs = Vec::new();
        for p in [old, self.path.clone()] {
            let end = len_of(&p);
            let start = window
                .since
                .map_or(0, |t| logs::offset_since(&p, t).min(end));
            segs.push(Segment {
                path: p,
                start,
                end,
            });
        }
        self.offset = segs[1].end;
        if let Some(n) = window.tail {
            tail(&mut segs, n)?;
        }
        self.plan
            .extend(segs.into_iter().filter(|s| s.end > s.start));
        Ok(())
    }

    /// Plans what was appended since the last plan. When the file was rotated meanwhile, the
    /// rest of what was read from is in the rotated copy: that first, then the new file.
    pub fn plan_new(&mut self) {
        let old = logs::rotated(&self.path);
        let ino = ino_of(&old);
        let len = len_of(&self.path);
        if len < self.offset || ino != self.rotated_ino {
            self.rotated_ino = ino;
            self.file = None; // may be the replaced copy
            let end = len_of(&old);
            if end > self.offset {
                self.plan.push_back(Segment {
                    path: old,
                    start: self.offset,
                    end,
                });
            }
            self.offset = 0;
        }
        if len > self.offset {
            self.plan.push_back(Segment {
                path: self.path.clone(),
                start: self.offset,
                end: len,
            });
            self.offset = len;
        }
    }

    /// The next bytes of the plan, at most `buf.len()`; 0 once all of it was read.
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(seg) = self.plan.front_mut() {
            if seg.start >= seg.end {
                self.plan.pop_front();
                continue;
            }
            let f = match &mut self.file {
                Some((p, f)) if *p == seg.path => f,
                _ => match std::fs::File::open(&seg.path) {
                    Ok(f) => &mut self.file.insert((seg.path.clone(), f)).1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.plan.pop_front();
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            f.seek(SeekFrom::Start(seg.start))?;
            let want = (seg.end - seg.start).min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                // Truncated under us (rotated): what remains is in the next plan.
                self.plan.pop_front();
                continue;
            }
            seg.start += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

/// Moves the starts of `segs` (read in order) back from their ends so that exactly the
/// last `n` lines remain (a last line without its newline counts).
fn tail(segs: &mut [Segment], n: u64) -> std::io::Result<()> {
    if n == 0 {
        for s in segs.iter_mut() {
            s.start = s.end;
        }
        return Ok(());
    }
    let mut newlines = 0u64;
    // A newline ending the very last byte ends the last line; it starts none.
    let mut skip_last = true;
    for i in (0..segs.len()).rev() {
        let (start, mut pos) = (segs[i].start, segs[i].end);
        if pos <= start {
            continue;
        }
        let mut f = std::fs::File::open(&segs[i].path)?;
        let mut buf = vec![0u8; TAIL_STEP as usize];
        while pos > start {
            let from = pos.saturating_sub(TAIL_STEP).max(start);
            let chunk = &mut buf[..(pos - from) as usize];
            f.seek(SeekFrom::Start(from))?;
            f.read_exact(chunk)?;
            for (j, b) in chunk.iter().enumerate().rev() {
                if *b != b'\n' {
                    skip_last = false;
                    continue;
                }
                if skip_last {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    segs[i].start = from + j as u64 + 1;
                    for s in &mut segs[..i] {
                        s.start = s.end;
                    }
                    return Ok(());
                }
            }
            pos = from;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(r: &mut LogReader) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return String::from_utf8(out).unwrap();
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn backlog(dir: &Path, w: Window) -> String {
        let mut r = LogReader::new(dir, LogStream::Stdout);
        r.plan_backlog(w).unwrap();
        read_all(&mut r)
    }

    #[test]
    fn tail_counts_lines_back_across_the_rotated_copy() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("stdout.log.1"), "a\nb\nc").unwrap();
        std::fs::write(d.path().join("stdout.log"), "d\ne\n").unwrap();
        let t = |n| Window {
            tail: Some(n),
            ..Window::default()
        };
        assert_eq!(backlog(d.path(), Window::default()), "a\nb\ncd\ne\n");
        // Rotation cut "c" from "d": one line.
        assert_eq!(backlog(d.path(), t(2)), "cd\ne\n");
        assert_eq!(backlog(d.path(), t(3)), "b\ncd\ne\n");
        assert_eq!(backlog(d.path(), t(1)), "e\n");
        assert_eq!(backlog(d.path(), t(0)), "");
        assert_eq!(backlog(d.path(), t(99)), "a\nb\ncd\ne\n");
        std::fs::write(d.path().join("stdout.log"), "d\ne").unwrap();
        assert_eq!(
            backlog(d.path(), t(1)),
            "e",
            "a last line without its newline"
        );
    }

    #[test]
    fn since_starts_at_the_length_noted_before_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        std::fs::write(&p, "old\nnew\n").unwrap();
        let t0 = SystemTime::now() - std::time::Duration::from_secs(60);
        logs::note_length(&p, 4, t0).unwrap();
        logs::note_length(&p, 8, t0 + std::time::Duration::from_secs(30)).unwrap();
        let w = Window {
            since: Some(t0 + std::time::Duration::from_secs(10)),
            tail: None,
        };
        assert_eq!(backlog(d.path(), w), "new\n");
    }

    #[test]
    fn following_reads_on_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stdout.log");
        let mut f = logs::open_append(&p).unwrap();
        f.write_all(b"one\n").unwrap();
        let mut r = LogReader::new(d.path(), LogStream::Stdout);
        r.plan_backlog(Window::default()).unwrap();
        assert_eq!(read_all(&mut r), "one\n");
        f.write_all(b"two\n").unwrap();
        logs::rotate(&p, 4).unwrap();
        f.write_all(b"three\n").unwrap();
        r.plan_new();
        assert_eq!(read_all(&mut r), "two\nthree\n");
        r.plan_new();
        assert_eq!(read_all(&mut r), "");
    }
}
