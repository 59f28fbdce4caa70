//! Following a rollout until it ends: `slipway release APP --image X --wait` and
//! `slipway rollout APP --watch`. A progress bar per wave on a terminal, one plain line per
//! change otherwise (CI logs), then a summary. The outcome becomes the exit code:
//! 0 live everywhere, 2 halted / rolled back / superseded, 3 timed out.

use super::client::Client;
use super::status::phase_cell;
use crate::defaults;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use slipway_proto::api::{Phase, RolloutHost, RolloutInfo, RolloutState};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Exit code of a rollout that halted, was rolled back or superseded.
pub const EXIT_NOT_LIVE: u8 = 2;
/// Exit code of `--wait` / `--watch` giving up at `--timeout`.
pub const EXIT_TIMEOUT: u8 = 3;

/// A followed rollout that did not go live everywhere; `slipway` exits with `code`.
#[derive(Debug, thiserror::Error)]
#[error("rollout of {app} seq {seq} {what}")]
pub struct NotLive {
    pub app: String,
    pub seq: u64,
    pub what: String,
    pub code: u8,
}

/// Polls of a halted rollout spent waiting for its rollback release to be named.
const HALTED_POLLS: u32 = 3;

/// `--timeout` of `--wait` / `--watch`.
#[derive(clap::Args, Debug, Clone)]
pub struct TimeoutArg {
    /// Give up following after this long (exit 3), e.g. `10m`, `90s` [default: 30m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

impl TimeoutArg {
    pub fn get(&self) -> Duration {
        self.timeout.unwrap_or(defaults::WAIT_TIMEOUT)
    }
}

/// Follows the rollout of `app` seq `seq` (the current one when `None`) until it ends or
/// `timeout` passes.
pub async fn follow(
    client: &Client,
    app: &str,
    mut seq: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut view: Box<dyn Progress> = if std::io::stdout().is_terminal() && !client.json {
        Box::new(Bars::default())
    } else {
        Box::new(Lines::default())
    };
    let mut errors = 0;
    let mut halted_polls = 0;
    let mut last: Option<RolloutInfo> = None;
    loop {
        let path = match seq {
            Some(s) => format!("/v1/apps/{app}/rollout?seq={s}"),
            None => format!("/v1/apps/{app}/rollout"),
        };
        match client.get::<RolloutInfo>(&path).await {
            Ok(info) => {
                errors = 0;
                let target = *seq.get_or_insert(info.seq);
                view.update(&info, start.elapsed());
                let state = info.state;
                last = Some(info);
                let last = last.as_ref();
                match state {
                    RolloutState::Done => {
                        view.finish();
                        summary(client, last, start, "is live everywhere");
                        return Ok(());
                    }
                    // The driver makes the rollback release on its next tick: wait for it
                    // a little so the summary can name it.
                    RolloutState::Halted
                        if last.is_some_and(|l| l.rollback_seq.is_none())
                            && halted_polls < HALTED_POLLS =>
                    {
                        halted_polls += 1;
                    }
                    RolloutState::Halted | RolloutState::Superseded => {
                        view.finish();
                        let what = state.to_string();
                        return end(client, last, app, target, start, what, EXIT_NOT_LIVE);
                    }
                    _ => {}
                }
            }
            // The rollout of a release just made may not be planned yet; a controller may
            // restart under us. Give up only after many failures in a row.
            Err(e) if errors < defaults::WATCH_MAX_ERRORS => {
                errors += 1;
                tracing::debug!(error = %e, "reading the rollout failed; trying again");
            }
            Err(e) => {
                view.finish();
                return Err(e.context(format!("following the rollout of {app}")));
            }
        }
        if start.elapsed() >= timeout {
            view.finish();
            let what = format!(
                "not finished within --timeout {}",
                humantime::format_duration(timeout)
            );
            let seq = seq.unwrap_or_default();
            return end(client, last.as_ref(), app, seq, start, what, EXIT_TIMEOUT);
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(defaults::WATCH_POLL.min(left)).await;
    }
}

fn end(
    client: &Client,
    last: Option<&RolloutInfo>,
    app: &str,
    seq: u64,
    start: Instant,
    what: String,
    code: u8,
) -> anyhow::Result<()> {
    summary(client, last, start, &what);
    Err(NotLive {
        app: app.into(),
        seq,
        what,
        code,
    }
    .into())
}

/// `web seq 2 is live everywhere: 3/3 hosts live, 0 failed, 12s`, then each failure.
fn summary(client: &Client, info: Option<&RolloutInfo>, start: Instant, what: &str) {
    let secs = Duration::from_secs(start.elapsed().as_secs());
    let Some(i) = info else {
        println!(
            "summary: no rollout seen, {}",
            humantime::format_duration(secs)
        );
        return;
    };
    if client.json {
        let _ = super::client::print_json(i);
        return;
    }
    let live = i.hosts.iter().filter(|h| is_live(i, h)).count();
    println!(
        "summary: {} seq {} {what}: {live}/{} hosts live, {} failed, {}",
        i.app,
        i.seq,
        i.hosts.len(),
        i.failures,
        humantime::format_duration(secs)
    );
    if let Some(r) = &i.reason {
        println!("  reason: {r}");
    }
    for h in &i.hosts {
        if let Some(f) = &h.failed {
            println!("  failed: {}: {f}", h.host);
        }
    }
    if let Some(s) = i.rollback_seq {
        println!("  rolled back as seq {s}");
    }
}

fn is_live(i: &RolloutInfo, h: &RolloutHost) -> bool {
    h.reported_seq == Some(i.seq) && matches!(h.phase, Some(Phase::Live))
}

/// What a host shows while followed: its phase for this release, or `waiting`.
fn host_cell(i: &RolloutInfo, h: &RolloutHost) -> String {
    match (&h.failed, h.reported_seq, &h.phase) {
        (Some(f), _, _) => format!("failed: {f}"),
        (None, Some(s), Some(p)) if s == i.seq => phase_cell(p, h.expired_at.as_deref()),
        _ if h.wave < i.started => "waiting".into(),
        _ => "pending".into(),
    }
}

trait Progress {
    fn update(&mut self, info: &RolloutInfo, elapsed: Duration);
    fn finish(&mut self);
}

/// Not a terminal: one line per change, prefixed with the seconds since the start.
#[derive(Default)]
struct Lines {
    started: usize,
    state: Option<RolloutState>,
    hosts: BTreeMap<String, String>,
}

impl Progress for Lines {
    fn update(&mut self, i: &RolloutInfo, elapsed: Duration) {
        let at = format!("[{:>4}s]", elapsed.as_secs());
        if self.state.is_none() {
            println!(
                "{at} following {} seq {} ({}): {} host(s) in {} wave(s)",
                i.app,
                i.seq,
                i.kind,
                i.hosts.len(),
                i.waves.len()
            );
        }
        while self.started < i.started {
            let w = &i.waves[self.started];
            self.started += 1;
            println!(
                "{at} wave {}/{} started: {}",
                self.started,
                i.waves.len(),
                w.join(", ")
            );
        }
        for h in &i.hosts {
            if h.wave >= i.started {
                continue;
            }
            let cell = host_cell(i, h);
            if self.hosts.get(&h.host) != Some(&cell) {
                println!("{at} {} (wave {}): {cell}", h.host, h.wave + 1);
                self.hosts.insert(h.host.clone(), cell);
            }
        }
        if self.state != Some(i.state) {
            if self.state.is_some() || i.state != RolloutState::Running {
                let why = i.reason.as_deref().map(|r| format!(": {r}"));
                println!("{at} rollout {}{}", i.state, why.unwrap_or_default());
            }
            self.state = Some(i.state);
        }
    }

    fn finish(&mut self) {}
}

/// A terminal: a bar per wave (hosts done of hosts in it) with the state beneath.
#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    waves: Vec<ProgressBar>,
    state: Option<ProgressBar>,
}

impl Progress for Bars {
    fn update(&mut self, i: &RolloutInfo, elapsed: Duration) {
        if self.waves.is_empty() {
            let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> ");
            for (n, w) in i.waves.iter().enumerate() {
                let bar = self.multi.add(ProgressBar::new(w.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(format!("wave {}", n + 1));
                self.waves.push(bar);
            }
            self.state = Some(self.multi.add(ProgressBar::new_spinner()));
        }
        for (n, bar) in self.waves.iter().enumerate() {
            let hosts: Vec<&RolloutHost> = i.hosts.iter().filter(|h| h.wave == n).collect();
            let done = hosts
                .iter()
                .filter(|h| h.failed.is_some() || is_live(i, h))
                .count();
            bar.set_position(done as u64);
            let cells: Vec<String> = hosts
                .iter()
                .filter(|h| !is_live(i, h))
                .map(|h| format!("{} {}", h.host, host_cell(i, h)))
                .collect();
            bar.set_message(if n >= i.started {
                "pending".to_string()
            } else if cells.is_empty() {
                "live".to_string()
            } else {
                cells.join(", ")
            });
        }
        if let Some(s) = &self.state {
            let why = i.reason.as_deref().map(|r| format!(": {r}"));
            s.set_message(format!(
                "{} seq {} {}{} ({}s)",
                i.app,
                i.seq,
                i.state,
                why.unwrap_or_default(),
                elapsed.as_secs()
            ));
            s.tick();
        }
    }

    fn finish(&mut self) {
        for b in self.waves.iter().chain(self.state.iter()) {
            b.abandon();
        }
    }
}
