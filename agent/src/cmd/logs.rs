//! `slipway-agent logs <app>`: a container's stdout and stderr, optionally followed.

use super::ps::Settings;
use anyhow::Context;
use slipway_runtime::state::{container_dirs, Record, RecordPhase};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--follow` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct Args {
    /// App whose container to show: its running container with the highest seq, else its
    /// newest one (discarded containers keep their recent logs).
    app: String,
    /// Show this release's container instead.
    #[arg(long)]
    seq: Option<u64>,
    /// Keep printing output as it arrives (Ctrl-C to stop).
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    settings: Settings,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = args.settings.runtime_config()?;
    let dir = pick(&cfg.state_dir, &args.app, args.seq)?;
    let (out, err) = slipway_runtime::logs::paths(&dir);
    // Rotated output first, then the current file.
    let mut streams = [Stream::new(out, false), Stream::new(err, true)];
    for s in &mut streams {
        s.print_rotated()?;
        s.pump()?;
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        for s in &mut streams {
            s.pump()?;
        }
    }
}

/// The container dir to show for `app`.
fn pick(state_dir: &Path, app: &str, seq: Option<u64>) -> anyhow::Result<PathBuf> {
    let mut found: Vec<(bool, u64, PathBuf)> = Vec::new();
    for (_, dir) in container_dirs(state_dir)? {
        if let Some(r) = Record::load(&dir)? {
            if r.app == app && seq.is_none_or(|s| s == r.seq) {
                let live = matches!(r.phase, RecordPhase::Created | RecordPhase::Started)
                    && r.exit_code.is_none();
                found.push((live, r.seq, dir));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, _, d)| d).with_context(|| match seq {
        Some(s) => format!(
            "no container of app `{app}` seq {s} in {}",
            state_dir.display()
        ),
        None => format!("no container of app `{app}` in {}", state_dir.display()),
    })
}

/// One log file being printed; copes with copy-and-truncate rotation.
struct Stream {
    path: PathBuf,
    stderr: bool,
    offset: u64,
}

impl Stream {
    fn new(path: PathBuf, stderr: bool) -> Self {
        Self {
            path,
            stderr,
            offset: 0,
        }
    }

    fn write(&self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.stderr {
            std::io::stderr().write_all(bytes)?;
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(bytes)?;
            o.flush()?;
        }
        Ok(())
    }

    fn print_rotated(&self) -> anyhow::Result<()> {
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        if let Ok(bytes) = std::fs::read(PathBuf::from(old)) {
            self.write(&bytes)?;
        }
        Ok(())
    }

    /// Prints what was appended since the last call.
    fn pump(&mut self) -> anyhow::Result<()> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        let len = f.metadata()?.len();
        if len < self.offset {
            self.offset = 0; // rotated: the file was truncated
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.write(&buf)
    }
}
