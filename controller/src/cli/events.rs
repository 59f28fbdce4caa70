//! `slipway events [--app A] [--since ID] [-f]`: the controller's event log, oldest first;
//! `-f` keeps following it (Server-Sent Events) until interrupted.

use super::cells::age;
use super::client::Client;
use crate::store::EventRecord;
use anyhow::Context;
use futures_util::StreamExt;

#[derive(clap::Args)]
pub struct Args {
    /// Only this app's events.
    #[arg(long)]
    pub app: Option<String>,
    /// Only events after this id (resume where an earlier run stopped).
    #[arg(long)]
    pub since: Option<u64>,
    /// Keep following: print new events as they happen.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<()> {
    let mut query = vec![format!("since={}", a.since.unwrap_or(0))];
    if let Some(app) = &a.app {
        query.push(format!("app={app}"));
    }
    let path = format!("/v1/events?{}", query.join("&"));
    if !a.follow {
        let events: Vec<EventRecord> = client.get(&path).await.context("reading events")?;
        for ev in &events {
            print(client, ev)?;
        }
        return Ok(());
    }
    let resp = client.stream(&path).await.context("following events")?;
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(
            &chunk.context("event stream cut")?,
        ));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                let ev: EventRecord = serde_json::from_str(data.trim())
                    .with_context(|| format!("event `{data}` is not what this CLI expects"))?;
                print(client, &ev)?;
            }
        }
    }
    anyhow::bail!("the controller ended the event stream (shutting down?)")
}

/// `ID  AGE  KIND  APP  detail`, or the event as one JSON line with `--json`.
fn print(client: &Client, ev: &EventRecord) -> anyhow::Result<()> {
    if client.json {
        println!("{}", serde_json::to_string(ev)?);
        return Ok(());
    }
    let detail: Vec<String> = ev
        .detail
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect();
    println!(
        "{:<6} {:<8} {:<20} {:<12} {}",
        ev.id,
        age(&ev.at, client.wide),
        ev.kind,
        ev.app.as_deref().unwrap_or("-"),
        detail.join(" ")
    );
    Ok(())
}
