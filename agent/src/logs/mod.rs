//! A container's output, for `slipway-agent logs` on the host and for `slipway logs` through
//! the controller ([`remote`]): both read with [`copy`], into a different [`LogSink`].

pub mod read;
pub mod remote;

use crate::defaults;
use read::{LogReader, Window};
use slipway_proto::api::logs::LogStream;
use std::path::Path;
use std::time::Instant;

/// Where output goes. Used through generics only, so `async fn` is fine here.
#[allow(async_fn_in_trait)]
pub trait LogSink {
    /// Bytes of one stream, as read (not cut at lines). An error ends the copy.
    async fn output(&mut self, stream: LogStream, bytes: &[u8]) -> std::io::Result<()>;
    /// A follow tick brought nothing new.
    async fn idle(&mut self) -> std::io::Result<()>;
    /// Something for the reader that is not output (the container followed changed).
    async fn note(&mut self, note: String) -> std::io::Result<()>;
}

/// What to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// That release's container (default: the app's running one with the highest seq).
    pub seq: Option<u64>,
    pub window: Window,
    /// Go on with new output until the sink fails (the reader left).
    pub follow: bool,
}

/// Copies `app`'s output into `sink`: the backlog of each stream per `opts.window`, then,
/// with `follow`, new output as it is written. A follow moves to the app's newer container
/// when one starts (unless `seq` pins one), saying so.
pub async fn copy(
    state_dir: &Path,
    app: &str,
    opts: Options,
    sink: &mut impl LogSink,
) -> anyhow::Result<()> {
    let mut picked = read::pick(state_dir, app, opts.seq)?;
    let mut readers = readers_of(&picked.dir);
    for r in &mut readers {
        r.plan_backlog(opts.window)?;
        drain(r, sink).await?;
    }
    if !opts.follow {
        return Ok(());
    }
    let mut repicked = Instant::now();
    loop {
        tokio::time::sleep(defaults::LOG_FOLLOW_INTERVAL).await;
        let mut any = false;
        for r in &mut readers {
            r.plan_new();
            any |= drain(r, sink).await?;
        }
        if !any {
            sink.idle().await?;
        }
        if opts.seq.is_some() || repicked.elapsed() < defaults::LOG_FOLLOW_REPICK {
            continue;
        }
        repicked = Instant::now();
        match read::pick(state_dir, app, None) {
            Ok(p) if p.dir != picked.dir => {
                sink.note(format!(
                    "now following release {} (container {}), was release {}",
                    p.seq, p.id, picked.seq
                ))
                .await?;
                picked = p;
                readers = readers_of(&picked.dir);
                for r in &mut readers {
                    r.plan_backlog(Window::default())?;
                    drain(r, sink).await?;
                }
            }
            _ => {}
        }
    }
}

fn readers_of(dir: &Path) -> [LogReader; 2] {
    [
        LogReader::new(dir, LogStream::Stdout),
        LogReader::new(dir, LogStream::Stderr),
    ]
}

/// Reads what `r` has planned into `sink`; whether there was anything.
async fn drain(r: &mut LogReader, sink: &mut impl LogSink) -> anyhow::Result<bool> {
    let mut buf = vec![0u8; defaults::LOG_CHUNK];
    let mut any = false;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(any);
        }
        any = true;
        sink.output(r.stream, &buf[..n]).await?;
    }
}
