//! `slipway logs APP [--host H] [-f] [--since 10m] [--tail N]`: the output of an app's
//! containers, read through the controller from every host that runs it (no SSH, and no port
//! open on the hosts). Several hosts: each line is prefixed with its host, `[web-1] ...` on
//! stdout for the containers' stdout and `[web-1 stderr] ...` on stderr for their stderr.
//! One host (`--host`): the lines as they are, stdout to stdout, stderr to stderr.

use super::client::Client;
use anyhow::{bail, Context};
use futures_util::StreamExt;
use slipway_proto::api::logs::{LogFrame, LogStream};
use std::io::Write;

#[derive(clap::Args)]
pub struct Args {
    /// App whose containers' output to show (each host's newest running container of it).
    pub app: String,
    /// Only this host [default: every host that runs the app, lines prefixed with the host].
    #[arg(long)]
    pub host: Option<String>,
    /// Keep printing new output as it is written (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only output written since then: a duration back from now (`10m`, `2h`) or an RFC 3339
    /// time. Hosts note write times every second, so lines up to a second older may show.
    #[arg(long, value_name = "DURATION|RFC3339")]
    pub since: Option<String>,
    /// Only the last N lines of each stream (stdout, stderr) on each host.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(h) = &a.host {
        query.push(("host", h.clone()));
    }
    if a.follow {
        query.push(("follow", "true".into()));
    }
    if let Some(s) = &a.since {
        query.push(("since", s.clone()));
    }
    if let Some(n) = a.tail {
        query.push(("tail", n.to_string()));
    }
    let mut path = format!("/v1/apps/{}/logs", a.app);
    if !query.is_empty() {
        path.push('?');
        path.push_str(&serde_urlencoded::to_string(&query)?);
    }
    let resp = client
        .stream_as(&path, "application/x-ndjson")
        .await
        .with_context(|| format!("reading the logs of {}", a.app))?;
    let mut out = Printer {
        json: client.json,
        prefix: a.host.is_none(),
        failed: Vec::new(),
    };
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.context("the controller cut the log stream")?);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let frame: LogFrame = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "log frame `{}` is not what this CLI expects",
                    String::from_utf8_lossy(&line).trim()
                )
            })?;
            out.print(&frame)?;
        }
    }
    if !out.failed.is_empty() {
        bail!("no logs from {} (see above)", out.failed.join(", "));
    }
    Ok(())
}

struct Printer {
    json: bool,
    prefix: bool,
    /// Hosts that answered with an error.
    failed: Vec<String>,
}

impl Printer {
    fn print(&mut self, f: &LogFrame) -> anyhow::Result<()> {
        if f.is_keep_alive() {
            return Ok(());
        }
        let host = f.host.as_deref().unwrap_or("?");
        if let Some(e) = &f.error {
            if !self.failed.iter().any(|h| h == host) {
                self.failed.push(host.to_string());
            }
            if !self.json {
                eprintln!("[{host}] error: {e}");
            }
        }
        if self.json {
            let mut o = std::io::stdout().lock();
            writeln!(o, "{}", serde_json::to_string(f)?)?;
            return Ok(o.flush()?);
        }
        if let Some(n) = &f.note {
            eprintln!("[{host}] {n}");
        }
        let Some(line) = &f.line else {
            return Ok(());
        };
        let stream = f.stream.unwrap_or(LogStream::Stdout);
        match (stream, self.prefix) {
            (LogStream::Stdout, true) => {
                let mut o = std::io::stdout().lock();
                writeln!(o, "[{host}] {line}")?;
                o.flush()?;
            }
            (LogStream::Stdout, false) => {
                let mut o = std::io::stdout().lock();
                writeln!(o, "{line}")?;
                o.flush()?;
            }
            (LogStream::Stderr, true) => eprintln!("[{host} stderr] {line}"),
            (LogStream::Stderr, false) => eprintln!("{line}"),
        }
        Ok(())
    }
}
