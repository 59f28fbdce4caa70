//! `slipway logs` with no port open on the host: the agent keeps a log long-poll open to its
//! controller (`GET /v1/hosts/{host}/log-requests`) and answers each request by streaming
//! the container's lines up (`POST /v1/hosts/{host}/logs/{id}`, NDJSON
//! [`LogFrame`]s). The upload ends when the output does (or, with `follow`, when the
//! controller ends it because its reader left: the answer comes, or the next write fails).

use super::read::Window;
use super::{copy, LogSink, Options};
use crate::defaults;
use crate::source::controller::{
    api_error, backoff, read_token, ControllerSourceConfig, CONNECT_TIMEOUT,
};
use anyhow::Context;
use bytes::Bytes;
use slipway_proto::api::logs::{LogFrame, LogRequest, LogRequests, LogStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

/// What every upload needs.
struct Ctx {
    cfg: ControllerSourceConfig,
    http: reqwest::Client,
    /// Where the runtime keeps the containers (and their logs).
    state_dir: PathBuf,
    uploads: Arc<Semaphore>,
}

/// Takes log requests from the controller and serves them, until the process ends.
pub async fn run(cfg: ControllerSourceConfig, state_dir: PathBuf) {
    let http = match reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client; serving no remote logs");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        cfg,
        http,
        state_dir,
        uploads: Arc::new(Semaphore::new(defaults::LOG_UPLOADS_MAX)),
    });
    let mut failures = 0u32;
    loop {
        match poll(&ctx).await {
            Ok(requests) => {
                failures = 0;
                for req in requests {
                    tokio::spawn(serve(ctx.clone(), req));
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                // The desired-set poll already warns of an unreachable controller.
                if failures == 1 {
                    tracing::info!(error = %format!("{e:#}"), "log requests: no answer from the controller; retrying");
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

async fn poll(ctx: &Ctx) -> anyhow::Result<Vec<LogRequest>> {
    // Re-read each time: the file may have been replaced since.
    let token = read_token(&ctx.cfg.token_file)?;
    let url = format!(
        "{}/v1/hosts/{}/log-requests?wait={}ms",
        ctx.cfg.url.trim_end_matches('/'),
        ctx.cfg.host_id,
        defaults::LOG_POLL_WAIT.as_millis()
    );
    let resp = ctx
        .http
        .get(&url)
        .bearer_auth(&token)
        .timeout(defaults::LOG_POLL_WAIT + CONNECT_TIMEOUT * 3)
        .send()
        .await
        .context("polling for log requests")?;
    if !resp.status().is_success() {
        return Err(api_error(resp).await.context("polling for log requests"));
    }
    let body: LogRequests = resp.json().await.context("reading the log requests")?;
    Ok(body.requests)
}

/// Streams the answer to one request.
async fn serve(ctx: Arc<Ctx>, req: LogRequest) {
    let permit = ctx.uploads.clone().try_acquire_owned();
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let mut sink = FrameSink::new(tx);
    let state_dir = ctx.state_dir.clone();
    let host = ctx.cfg.host_id.clone();
    let r = req.clone();
    let producer = tokio::spawn(async move {
        let _permit = match permit {
            Ok(p) => p,
            Err(_) => {
                let _ = sink
                    .error(format!(
                        "host {host} already streams {} logs; end some first",
                        defaults::LOG_UPLOADS_MAX
                    ))
                    .await;
                return;
            }
        };
        let since = match r.since.as_deref() {
            None => None,
            Some(s) => match humantime::parse_rfc3339_weak(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    let _ = sink.error(format!("since `{s}`: {e}")).await;
                    return;
                }
            },
        };
        let opts = Options {
            seq: None,
            window: Window {
                since,
                tail: r.tail,
            },
            follow: r.follow,
        };
        match copy(&state_dir, &r.app, opts, &mut sink).await {
            Ok(()) => {
                let _ = sink.flush().await;
            }
            Err(e) if !sink.closed => {
                let _ = sink.flush().await;
                let _ = sink.error(format!("{e:#}")).await;
            }
            Err(_) => {}
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let url = format!(
        "{}/v1/hosts/{}/logs/{}",
        ctx.cfg.url.trim_end_matches('/'),
        ctx.cfg.host_id,
        req.id
    );
    let sent = match read_token(&ctx.cfg.token_file) {
        Ok(token) => ctx
            .http
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    // The answer ends the upload, whatever is left to send.
    producer.abort();
    match sent {
        Ok(resp) if resp.status().is_success() => {
            tracing::debug!(app = %req.app, id = %req.id, "log upload done")
        }
        Ok(resp) if resp.status().as_u16() == 410 => {
            tracing::debug!(app = %req.app, id = %req.id, "log reader left; upload ended")
        }
        Ok(resp) => {
            let e = api_error(resp).await;
            tracing::warn!(app = %req.app, error = %format!("{e:#}"), "log upload refused");
        }
        Err(e) => {
            tracing::warn!(app = %req.app, error = %format!("{e:#}"), "log upload failed")
        }
    }
}

/// Cuts output into lines and sends them as NDJSON frames.
struct FrameSink {
    tx: mpsc::Sender<Bytes>,
    /// Per stream, the start of a line whose newline has not come yet.
    partial: [Vec<u8>; 2],
    last_sent: Instant,
    /// The upload ended: nothing more can be sent.
    closed: bool,
}

fn slot(stream: LogStream) -> usize {
    match stream {
        LogStream::Stdout => 0,
        LogStream::Stderr => 1,
    }
}

impl FrameSink {
    fn new(tx: mpsc::Sender<Bytes>) -> Self {
        Self {
            tx,
            partial: [Vec::new(), Vec::new()],
            last_sent: Instant::now(),
            closed: false,
        }
    }

    async fn send(&mut self, frame: &LogFrame) -> std::io::Result<()> {
        if self.tx.send(Bytes::from(frame.to_ndjson())).await.is_err() {
            self.closed = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the controller ended the log upload",
            ));
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    async fn line(&mut self, stream: LogStream, bytes: &[u8]) -> std::io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        self.send(&LogFrame::line(stream, text)).await
    }

    async fn error(&mut self, error: String) -> std::io::Result<()> {
        self.send(&LogFrame::error(error)).await
    }

    /// Sends the lines still waiting for their newline.
    async fn flush(&mut self) -> std::io::Result<()> {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[slot(stream)]);
            if !rest.is_empty() {
                self.line(stream, &rest).await?;
            }
        }
        Ok(())
    }
}

impl LogSink for FrameSink {
    async fn output(&mut self, stream: LogStream, bytes: &[u8]) -> std::io::Result<()> {
        let i = slot(stream);
        self.partial[i].extend_from_slice(bytes);
        loop {
            let buf = &self.partial[i];
            let cut = match buf.iter().position(|b| *b == b'\n') {
                Some(end) if end <= defaults::LOG_LINE_MAX => Some((end, end + 1)),
                _ if buf.len() > defaults::LOG_LINE_MAX => {
                    Some((defaults::LOG_LINE_MAX, defaults::LOG_LINE_MAX))
                }
                _ => None,
            };
            let Some((end, next)) = cut else {
                return Ok(());
            };
            let line: Vec<u8> = self.partial[i].drain(..next).take(end).collect();
            self.line(stream, &line).await?;
        }
    }

    async fn idle(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        if self.last_sent.elapsed() >= defaults::LOG_KEEP_ALIVE {
            self.send(&LogFrame::default()).await?;
        }
        Ok(())
    }

    async fn note(&mut self, note: String) -> std::io::Result<()> {
        self.flush().await?;
        self.send(&LogFrame::note(note)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_cut_into_lines_and_long_ones_are_split() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = FrameSink::new(tx);
        sink.output(LogStream::Stdout, b"one\ntw").await.unwrap();
        sink.output(LogStream::Stderr, b"err\r\n").await.unwrap();
        sink.output(LogStream::Stdout, b"o\n").await.unwrap();
        let long = vec![b'x'; defaults::LOG_LINE_MAX + 5];
        sink.output(LogStream::Stdout, &long).await.unwrap();
        sink.flush().await.unwrap();
        drop(sink);
        let mut got = Vec::new();
        while let Some(b) = rx.recv().await {
            let f: LogFrame = serde_json::from_slice(&b).unwrap();
            got.push((f.stream.unwrap(), f.line.unwrap().len()));
        }
        use LogStream::*;
        assert_eq!(
            got,
            [
                (Stdout, 3),
                (Stderr, 3),
                (Stdout, 3),
                (Stdout, defaults::LOG_LINE_MAX),
                (Stdout, 5)
            ]
        );
    }
}
