//! The rollout of one release, as stored: its waves, which have started, which hosts went
//! live or failed, and the rules that move it on. Pure: the driver feeds it what the hosts
//! reported and the clock, and stores what comes out.

use serde::{Deserialize, Serialize};
use slipway_proto::api::{HostLifecycle, Phase, RolloutState};
use slipway_proto::AppSpec;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

mod evaluate;
mod left_out;

pub use left_out::LeftOut;

/// An ordinary release goes out in waves; the automatic rollback of a halted rollout goes at
/// once to the hosts that got the bad release, and to no other host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Release,
    Rollback,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Release => "release",
            Kind::Rollback => "rollback",
        }
    }
}

/// One release's rollout. Times are unix milliseconds so the document is the same on every
/// controller replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub app: String,
    pub seq: u64,
    pub kind: Kind,
    /// Host ids per wave, in order.
    pub waves: Vec<Vec<String>>,
    /// Wave 0 is the canary: any failure there halts, whatever the budget.
    pub canary: bool,
    /// Waves started so far (their hosts get this release).
    pub started: usize,
    pub wave_started_ms: i64,
    /// When the newest started wave was all live (the pause counts from here).
    pub wave_done_ms: Option<i64>,
    pub state: RolloutState,
    pub reason: Option<String>,
    /// Per host: the seq it keeps until its wave starts (what it was told before).
    pub base: BTreeMap<String, u64>,
    /// Last release that went out completely: hosts outside the plan (new ones) get it.
    pub stable: Option<u64>,
    pub live: BTreeSet<String>,
    /// Host -> why it counts as failed.
    pub failed: BTreeMap<String, String>,
    pub max_failures: u32,
    pub pause_ms: u64,
    pub manual_promotion: bool,
    pub promoted: bool,
    /// Set by `promote` while pausing between waves: start the next one now.
    pub skip_pause: bool,
    /// A host of a started wave that is not live this long after its wave started failed.
    pub deadline_ms: u64,
    /// Halted and a rollback release is (to be) made.
    pub rollback_wanted: bool,
    pub rollback_seq: Option<u64>,
    /// Hosts of the app left out of this rollout (when planned, or since), and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub left_out: BTreeMap<String, LeftOut>,
    /// The hosts of waves not started yet are told the release ahead (to pull it and make
    /// its container): set once every host of the first wave has switched its traffic (it
    /// bakes, is live or is settled), so they compete neither with that wave's pull for the
    /// registry nor with its start for the host (`runc`, CNI and the kernel's network locks
    /// are shared by every container made at that moment).
    #[serde(default)]
    pub ahead: bool,
}

/// What the driver knows about one host of the plan when it evaluates.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Last (seq, phase) the host reported for the app.
    pub report: Option<(u64, Phase)>,
    /// Milliseconds since the host last polled or reported; `None`: unknown host.
    pub silent_ms: Option<u64>,
    /// Cordoned, drained or down now: no new wave sends it the release, and a host of a
    /// started wave that is drained or down is no failure.
    pub held: Option<LeftOut>,
}

/// Spec-derived settings of a new rollout.
pub struct PlanParams<'a> {
    pub app: &'a str,
    pub seq: u64,
    pub spec: &'a AppSpec,
    /// Selected hosts, in any order.
    pub hosts: Vec<String>,
    /// Hosts labelled `slipway.canary=true` (they go first).
    pub canaries: BTreeSet<String>,
    /// Selected hosts left out of the plan (cordoned, drained, down), and why.
    pub left_out: BTreeMap<String, LeftOut>,
    pub base: BTreeMap<String, u64>,
    pub stable: Option<u64>,
    /// Added to the spec's health deadline, drain and bake for the per-host deadline.
    pub deploy_margin: Duration,
    pub now_ms: i64,
}

impl Rollout {
    /// Plans a release: canary first, then batches; the first wave starts at once.
    pub fn plan(p: PlanParams<'_>) -> Rollout {
        let hosts = super::canary::order(p.app, p.hosts, &p.canaries);
        let r = &p.spec.rollout;
        let mut waves = Vec::new();
        let canary = (r.canary as usize).min(hosts.len());
        if canary > 0 {
            waves.push(hosts[..canary].to_vec());
        }
        let batch = r.batch_size.hosts(hosts.len()).max(1);
        for chunk in hosts[canary..].chunks(batch) {
            waves.push(chunk.to_vec());
        }
        let deadline = p.spec.health.deadline + p.spec.swap.drain_timeout + p.spec.swap.bake;
        let mut out = Rollout {
            app: p.app.to_string(),
            seq: p.seq,
            kind: Kind::Release,
            canary: canary > 0,
            waves,
            started: 0,
            wave_started_ms: p.now_ms,
            wave_done_ms: None,
            state: RolloutState::Running,
            reason: None,
            base: p.base,
            stable: p.stable,
            live: BTreeSet::new(),
            failed: BTreeMap::new(),
            max_failures: r.max_failures,
            pause_ms: r.pause.as_millis() as u64,
            manual_promotion: r.manual_promotion,
            promoted: false,
            skip_pause: false,
            deadline_ms: (deadline + p.deploy_margin).as_millis() as u64,
            rollback_wanted: false,
            rollback_seq: None,
            left_out: p.left_out,
            ahead: false,
        };
        out.start_next(p.now_ms);
        out
    }

    /// The rollback of `halted` as release `seq`: one wave of every host that got the bad
    /// release, started at once; the other hosts keep what they had.
    pub fn rollback_of(halted: &Rollout, seq: u64, now_ms: i64) -> Rollout {
        let hosts: Vec<String> = halted.started_hosts().cloned().collect();
        let mut out = Rollout {
            seq,
            kind: Kind::Rollback,
            canary: false,
            waves: if hosts.is_empty() {
                vec![]
            } else {
                vec![hosts]
            },
            started: 0,
            wave_started_ms: now_ms,
            wave_done_ms: None,
            state: RolloutState::Running,
            reason: Some(format!(
                "automatic rollback of seq {}, which halted: {}",
                halted.seq,
                halted.reason.as_deref().unwrap_or("halted")
            )),
            live: BTreeSet::new(),
            failed: BTreeMap::new(),
            max_failures: u32::MAX,
            pause_ms: 0,
            manual_promotion: false,
            promoted: false,
            skip_pause: false,
            rollback_wanted: false,
            rollback_seq: None,
            ahead: false,
            ..halted.clone()
        };
        out.start_next(now_ms);
        out
    }

    /// Every wave of a just-planned rollout as one, with no canary, pause or manual gate
    /// (`slipway rollback --now`).
    pub fn into_one_wave(&mut self) {
        let hosts = self.waves.concat();
        self.waves = if hosts.is_empty() {
            vec![]
        } else {
            vec![hosts]
        };
        self.canary = false;
        self.pause_ms = 0;
        self.manual_promotion = false;
    }

    fn start_next(&mut self, now_ms: i64) {
        if self.started < self.waves.len() {
            self.started += 1;
            self.wave_started_ms = now_ms;
            self.wave_done_ms = None;
            self.skip_pause = false;
        } else {
            self.state = RolloutState::Done;
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Running | RolloutState::Paused | RolloutState::AwaitingPromotion
        )
    }

    /// Hosts of the waves started so far.
    pub fn started_hosts(&self) -> impl Iterator<Item = &String> {
        self.waves[..self.started].iter().flatten()
    }

    pub fn wave_of(&self, host: &str) -> Option<usize> {
        self.waves.iter().position(|w| w.iter().any(|h| h == host))
    }

    /// Each planned host's wave: for callers that look up many hosts, where `wave_of` would
    /// scan the plan once per host.
    pub fn wave_index(&self) -> HashMap<&str, usize> {
        self.waves
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.iter().map(move |h| (h.as_str(), i)))
            .collect()
    }

    /// The seq `host` is told to run for this app now.
    pub fn assigned(&self, host: &str) -> Option<u64> {
        self.assigned_in(host, || self.wave_of(host))
    }

    /// [`Rollout::assigned`], with `host`'s wave from `wave` (e.g. a [`Rollout::wave_index`]
    /// lookup), asked only when it matters.
    pub fn assigned_in(&self, host: &str, wave: impl FnOnce() -> Option<usize>) -> Option<u64> {
        match self.left_out.get(host) {
            Some(why) if why.by_operator() => return self.base.get(host).copied(),
            Some(_) => return self.default_seq(),
            None => {}
        }
        if self.kind == Kind::Release && self.state == RolloutState::Done {
            return Some(self.seq);
        }
        if wave().is_some_and(|w| w < self.started) {
            return Some(self.seq);
        }
        self.base.get(host).copied().or(self.stable)
    }

    /// The seq `host`, whose lifecycle is `now`, is told to run: a host an operator left out
    /// and has since let back in (uncordoned) gets what a host outside the plan gets.
    pub fn assigned_to(&self, host: &str, now: HostLifecycle) -> Option<u64> {
        self.assigned_to_in(host, now, || self.wave_of(host))
    }

    /// [`Rollout::assigned_to`], with `host`'s wave from `wave` (see [`Rollout::assigned_in`]).
    pub fn assigned_to_in(
        &self,
        host: &str,
        now: HostLifecycle,
        wave: impl FnOnce() -> Option<usize>,
    ) -> Option<u64> {
        match self.left_out.get(host) {
            Some(why) if why.by_operator() && now == HostLifecycle::Active => self.default_seq(),
            _ => self.assigned_in(host, wave),
        }
    }

    /// What hosts outside the plan (registered later) get.
    pub fn default_seq(&self) -> Option<u64> {
        if self.kind == Kind::Release && self.state == RolloutState::Done {
            Some(self.seq)
        } else {
            self.stable
        }
    }

    /// The release the next rollout may fall back to.
    pub fn stable_after(&self) -> Option<u64> {
        self.default_seq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> AppSpec {
        AppSpec::from_toml(&format!(
            "name = \"web\"\nimage = \"r/web\"\nlisten = 8080\ncontainer_port = 80\n{extra}"
        ))
        .unwrap()
    }

    pub(super) fn plan(extra: &str, n: usize) -> Rollout {
        let s = spec(extra);
        Rollout::plan(PlanParams {
            app: "web",
            seq: 2,
            spec: &s,
            hosts: (0..n).map(|i| format!("h{i:02}")).collect(),
            // h00 is the canary the tests below follow.
            canaries: ["h00".to_string()].into(),
            left_out: BTreeMap::new(),
            base: (0..n).map(|i| (format!("h{i:02}"), 1)).collect(),
            stable: Some(1),
            deploy_margin: Duration::from_secs(60),
            now_ms: 0,
        })
    }

    pub(super) fn report(r: &Rollout, phase: Phase) -> BTreeMap<String, Seen> {
        r.started_hosts()
            .map(|h| {
                (
                    h.clone(),
                    Seen {
                        report: Some((r.seq, phase.clone())),
                        silent_ms: Some(0),
                        held: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn waves_of_a_quarter_after_one_canary() {
        let r = plan("[rollout]\nbatch_size = \"25%\"\n", 20);
        let sizes: Vec<usize> = r.waves.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 5, 5, 5, 4]);
        assert_eq!(r.started, 1);
        assert_eq!(r.assigned("h00"), Some(2));
        assert_eq!(r.assigned("h01"), Some(1));
        assert_eq!(r.assigned("new"), Some(1));
    }

    #[test]
    fn one_wave_sends_every_host_at_once() {
        let mut r = plan(
            "[rollout]\nbatch_size = \"25%\"\npause = \"1m\"\nmanual_promotion = true\n",
            8,
        );
        r.into_one_wave();
        assert_eq!((r.waves.len(), r.started, r.canary), (1, 1, false));
        assert!((0..8).all(|i| r.assigned(&format!("h{i:02}")) == Some(2)));
        let silent = Duration::from_secs(60);
        r.evaluate(&report(&r, Phase::Live), 10, silent);
        assert_eq!(r.state, RolloutState::Done, "no pause, no promotion gate");
    }

    #[test]
    fn a_rollback_goes_to_the_started_hosts_only() {
        let mut r = plan("[rollout]\nbatch_size = 2\n", 5);
        r.halt("test".into());
        let b = Rollout::rollback_of(&r, 3, 100);
        assert_eq!(b.waves, vec![vec!["h00".to_string()]]);
        assert_eq!(b.assigned("h00"), Some(3));
        assert_eq!(b.assigned("h01"), Some(1));
        assert_eq!(b.default_seq(), Some(1));
    }
}
