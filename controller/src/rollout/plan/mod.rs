//! The rollout of one release, as stored: its waves, which have started, which hosts went
//! live or failed, and the rules that move it on. Pure: the driver feeds it what the hosts
//! reported and the clock, and stores what comes out.

use serde::{Deserialize, Serialize};
use slipway_proto::api::{HostLifecycle, Phase, RolloutState};
use slipway_proto::AppSpec;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

/// Why a host of the app is left out of a rollout: it gets no new release from it and its
/// silence or absence is no failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftOut {
    /// Cordoned by an operator: keeps what it runs.
    Cordoned,
    /// Drained by an operator: runs nothing.
    Drained,
    /// Silent past `host_down_after`, or, in a started wave, silent past `silent_after`
    /// without ever taking this release (a terminated VM: the release cannot have harmed
    /// it). Gets the live release when it is heard from again.
    Down,
    /// Removed by an operator (or no longer registered).
    Removed,
}

impl LeftOut {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftOut::Cordoned => "cordoned",
            LeftOut::Drained => "drained",
            LeftOut::Down => "down",
            LeftOut::Removed => "removed",
        }
    }

    /// Held out by an operator (as opposed to gone silent or away).
    fn by_operator(&self) -> bool {
        matches!(self, LeftOut::Cordoned | LeftOut::Drained)
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

    /// The seq `host` is told to run for this app now.
    pub fn assigned(&self, host: &str) -> Option<u64> {
        match self.left_out.get(host) {
            Some(why) if why.by_operator() => return self.base.get(host).copied(),
            Some(_) => return self.default_seq(),
            None => {}
        }
        if self.kind == Kind::Release && self.state == RolloutState::Done {
            return Some(self.seq);
        }
        if self.wave_of(host).is_some_and(|w| w < self.started) {
            return Some(self.seq);
        }
        self.base.get(host).copied().or(self.stable)
    }

    /// The seq `host`, whose lifecycle is `now`, is told to run: a host an operator left out
    /// and has since let back in (uncordoned) gets what a host outside the plan gets.
    pub fn assigned_to(&self, host: &str, now: HostLifecycle) -> Option<u64> {
        match self.left_out.get(host) {
            Some(why) if why.by_operator() && now == HostLifecycle::Active => self.default_seq(),
            _ => self.assigned(host),
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

    /// Counted failures, and whether they break the budget.
    fn over_budget(&self) -> Option<String> {
        if self.kind == Kind::Rollback {
            return None;
        }
        if self.canary {
            if let Some((h, why)) = self.failed.iter().find(|(h, _)| self.waves[0].contains(h)) {
                return Some(format!("canary {h} failed: {why}"));
            }
        }
        let n = self.failed.len() as u32;
        (n > self.max_failures).then(|| {
            let list: Vec<String> = self
                .failed
                .iter()
                .map(|(h, why)| format!("{h}: {why}"))
                .collect();
            format!(
                "{n} failed host(s), more than max_failures = {}: {}",
                self.max_failures,
                list.join("; ")
            )
        })
    }

    /// Moves the rollout on: records hosts that went live or failed, halts beyond the
    /// failure budget, and starts the next wave when the current one is live (and, after
    /// the canary, promoted; after the pause). Returns true when anything changed.
    pub fn evaluate(
        &mut self,
        seen: &BTreeMap<String, Seen>,
        now_ms: i64,
        silent_after: Duration,
    ) -> bool {
        if !self.is_active() {
            return false;
        }
        let before = self.clone();
        self.leave_out_held(seen);
        let wave_age = (now_ms - self.wave_started_ms).max(0) as u64;
        let started: Vec<String> = self.started_hosts().cloned().collect();
        for h in &started {
            if self.live.contains(h) || self.failed.contains_key(h) || self.left_out.contains_key(h)
            {
                continue;
            }
            let s = seen.get(h);
            // Whether the host reported any phase of this release: it took it.
            let took = s
                .and_then(|s| s.report.as_ref())
                .is_some_and(|(seq, _)| *seq == self.seq);
            match s.and_then(|s| s.report.as_ref()) {
                Some((seq, Phase::Live)) if *seq == self.seq => {
                    self.live.insert(h.clone());
                    continue;
                }
                Some((seq, Phase::Failed { reason } | Phase::RolledBack { reason }))
                    if *seq == self.seq =>
                {
                    self.failed.insert(h.clone(), reason.clone());
                    continue;
                }
                _ => {}
            }
            let silent = s.and_then(|s| s.silent_ms);
            match silent {
                // Gone before it took the release (a terminated VM): no failure of the
                // release; it converges when it comes back.
                Some(ms) if ms > silent_after.as_millis() as u64 && !took => {
                    self.left_out.insert(h.clone(), LeftOut::Down);
                }
                Some(ms) if ms > silent_after.as_millis() as u64 => {
                    self.failed.insert(
                        h.clone(),
                        format!(
                            "silent for {}: no poll or report (agent down or unreachable)",
                            humantime::format_duration(Duration::from_secs(ms / 1000))
                        ),
                    );
                }
                // Not seen since its wave started and never took it: wait for the silence
                // deadline above rather than blaming the release.
                Some(ms) if !took && ms >= wave_age => {}
                _ if wave_age > self.deadline_ms => {
                    self.failed.insert(
                        h.clone(),
                        format!(
                            "not live within {} of its wave starting",
                            humantime::format_duration(Duration::from_millis(self.deadline_ms))
                        ),
                    );
                }
                _ => {}
            }
        }
        if let Some(why) = self.over_budget() {
            self.halt(why);
            return true;
        }
        let wave_done = self.started > 0
            && self.waves[self.started - 1]
                .iter()
                .all(|h| self.live.contains(h) || self.is_settled(h));
        if self.started == 0 || wave_done {
            if self.wave_done_ms.is_none() {
                self.wave_done_ms = Some(now_ms);
            }
            if self.started >= self.waves.len() {
                self.state = RolloutState::Done;
                if self.kind == Kind::Release {
                    self.reason = None;
                }
            } else if self.state == RolloutState::Paused {
                // Started hosts carry on; nothing new starts.
            } else if self.canary && self.started == 1 && self.manual_promotion && !self.promoted {
                self.state = RolloutState::AwaitingPromotion;
                self.reason = Some("canary live; waiting for `slipway rollout promote`".into());
            } else {
                let waited = (now_ms - self.wave_done_ms.unwrap_or(now_ms)).max(0) as u64;
                if self.skip_pause || waited >= self.pause_ms {
                    self.state = RolloutState::Running;
                    self.reason = None;
                    self.start_next(now_ms);
                }
            }
        }
        *self != before
    }

    /// When (ms since the epoch) the next wave may start by the clock alone: the end of the
    /// pause after a finished wave. None when nothing waits for the clock (hosts still
    /// deploying, a promotion gate, paused, done).
    pub fn next_due_ms(&self) -> Option<i64> {
        let waiting = self.state == RolloutState::Running
            && self.started > 0
            && self.started < self.waves.len()
            && !self.skip_pause;
        let done = self.wave_done_ms.filter(|_| waiting)?;
        Some(done + self.pause_ms as i64)
    }

    /// Failed or left out: nothing more to wait for.
    fn is_settled(&self, host: &str) -> bool {
        self.failed.contains_key(host) || self.left_out.contains_key(host)
    }

    /// Leaves out the hosts held since the plan was made: every held host of a wave not
    /// started yet, and a host of a started wave, not live yet, that was drained, went down or
    /// was removed (a cordoned one got the release already and carries on). A host no longer
    /// registered counts as removed.
    fn leave_out_held(&mut self, seen: &BTreeMap<String, Seen>) {
        for (i, wave) in self.waves.iter().enumerate() {
            for h in wave {
                if self.live.contains(h) || self.is_settled(h) {
                    continue;
                }
                let held = match seen.get(h) {
                    None => Some(LeftOut::Removed),
                    Some(s) => s.held,
                };
                match held {
                    Some(why) if i >= self.started || why != LeftOut::Cordoned => {
                        self.left_out.insert(h.clone(), why);
                    }
                    _ => {}
                }
            }
        }
    }

    /// No further host gets the release; the hosts that have it get a rollback.
    pub fn halt(&mut self, why: String) {
        self.state = RolloutState::Halted;
        self.reason = Some(why);
        self.rollback_wanted = self.kind == Kind::Release;
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

    fn plan(extra: &str, n: usize) -> Rollout {
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

    fn report(r: &Rollout, phase: Phase) -> BTreeMap<String, Seen> {
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
    fn waves_advance_when_live_and_after_the_pause() {
        let mut r = plan("[rollout]\nbatch_size = 2\npause = \"1s\"\n", 5);
        let silent = Duration::from_secs(60);
        assert_eq!(
            r.next_due_ms(),
            None,
            "the canary deploys: nothing waits for the clock"
        );
        assert!(r.evaluate(&report(&r, Phase::Live), 10, silent));
        assert_eq!(r.started, 1, "pausing");
        assert_eq!(
            r.next_due_ms(),
            Some(1010),
            "the pause ends 1 s after the wave was live"
        );
        r.evaluate(&report(&r, Phase::Live), 1010, silent);
        assert_eq!(r.started, 2);
        assert_eq!(r.next_due_ms(), None);
        r.evaluate(&report(&r, Phase::Baking), 5000, silent);
        assert_eq!(r.started, 2, "baking is not live");
        for t in [6000, 7000, 8000, 9000, 10000] {
            r.evaluate(&report(&r, Phase::Live), t, silent);
        }
        assert_eq!(r.state, RolloutState::Done);
        assert_eq!(r.assigned("anyone"), Some(2));
    }

    #[test]
    fn a_failed_canary_halts_whatever_the_budget() {
        let mut r = plan("[rollout]\nmax_failures = 3\n", 4);
        let f = Phase::Failed {
            reason: "unhealthy".into(),
        };
        r.evaluate(&report(&r, f), 10, Duration::from_secs(60));
        assert_eq!(r.state, RolloutState::Halted);
        assert!(r.rollback_wanted);
        assert!(r.reason.as_deref().unwrap().contains("canary h00"));
        assert_eq!(r.assigned("h01"), Some(1), "no other host touched");
    }

    #[test]
    fn silent_hosts_and_the_deadline_count_as_failed() {
        let mut r = plan(
            "[rollout]\ncanary = 0\nbatch_size = 2\nmax_failures = 1\n",
            4,
        );
        let mut seen = report(&r, Phase::Pulling);
        seen.get_mut("h00").unwrap().silent_ms = Some(10_000);
        r.evaluate(&seen, 10, Duration::from_secs(5));
        assert!(r.failed["h00"].contains("silent"));
        assert_eq!(r.state, RolloutState::Running, "within budget");
        r.evaluate(
            &report(&r, Phase::Pulling),
            r.deadline_ms as i64 + 20,
            Duration::from_secs(5),
        );
        let other = r.waves[0].iter().find(|h| *h != "h00").unwrap();
        assert!(r.failed[other].contains("not live within"));
        assert_eq!(r.state, RolloutState::Halted);
    }

    #[test]
    fn a_host_gone_before_it_took_the_release_is_left_out_and_no_failure() {
        // max_failures = 0: one failure would halt.
        let mut r = plan("[rollout]\ncanary = 0\nbatch_size = 2\n", 4);
        let silent = Duration::from_secs(300);
        let wave = r.waves[0].clone();
        let mut seen = report(&r, Phase::Live);
        // A terminated VM: its last report is of the old release, and it has not been
        // heard from since before its wave started (at 0).
        let deadline = r.deadline_ms as i64 + 10;
        let gone = seen.get_mut(&wave[0]).unwrap();
        (gone.report, gone.silent_ms) = (Some((1, Phase::Live)), Some(deadline as u64 + 1));
        r.evaluate(&seen, deadline, silent);
        assert!(
            !r.failed.contains_key(&wave[0]),
            "not seen since its wave started: no deadline failure yet: {:?}",
            r.failed
        );
        assert_eq!(r.started, 1, "the wave waits for it");
        seen.get_mut(&wave[0]).unwrap().silent_ms = Some(301_000);
        r.evaluate(&seen, 301_000, silent);
        assert_eq!(r.left_out.get(&wave[0]), Some(&LeftOut::Down));
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert_eq!(r.state, RolloutState::Running);
        assert_eq!(r.started, 2, "the next wave started");
    }

    #[test]
    fn down_drained_removed_and_cordoned_hosts_are_left_out_not_failed() {
        let mut r = plan("[rollout]\ncanary = 0\nbatch_size = 2\n", 6);
        let silent = Duration::from_secs(5);
        let (first, second) = (r.waves[0].clone(), r.waves[1].clone());
        let mut seen = report(&r, Phase::Pulling);
        // A host of the started wave went down (silent far past silent_after too), another
        // was removed: neither is a failure, and the wave is done once nothing else waits.
        let down = seen.get_mut(&first[0]).unwrap();
        (down.silent_ms, down.held) = (Some(3_600_000), Some(LeftOut::Down));
        seen.remove(&first[1]);
        // In the next wave: one cordoned, one drained.
        for (h, why) in [
            (&second[0], LeftOut::Cordoned),
            (&second[1], LeftOut::Drained),
        ] {
            seen.insert(
                h.clone(),
                Seen {
                    report: Some((1, Phase::Live)),
                    silent_ms: Some(0),
                    held: Some(why),
                },
            );
        }
        r.evaluate(&seen, 10, silent);
        assert!(r.failed.is_empty(), "{:?}", r.failed);
        assert_eq!(r.left_out[&first[0]], LeftOut::Down);
        assert_eq!(r.left_out[&first[1]], LeftOut::Removed);
        assert_eq!(r.left_out[&second[0]], LeftOut::Cordoned);
        assert_eq!(r.started, 2, "one wave starts per evaluation");
        r.evaluate(&seen, 15, silent);
        assert_eq!(r.started, 3, "the next wave was settled from the start");
        let mut live = report(&r, Phase::Live);
        live.extend(seen);
        r.evaluate(&live, 20, silent);
        assert_eq!(r.state, RolloutState::Done);
        // The cordoned host keeps what it had; the down one gets the live release when back.
        assert_eq!(r.assigned(&second[0]), Some(1));
        assert_eq!(r.assigned(&first[0]), Some(2));
        assert_eq!(r.assigned(&r.waves[2][0].clone()), Some(2));
        // Uncordoned since: it gets what any host outside the plan gets.
        assert_eq!(r.assigned_to(&second[0], HostLifecycle::Cordoned), Some(1));
        assert_eq!(r.assigned_to(&second[0], HostLifecycle::Active), Some(2));
    }

    #[test]
    fn a_cordoned_host_of_a_started_wave_carries_on() {
        let mut r = plan("[rollout]\ncanary = 0\nbatch_size = 2\n", 4);
        let h = r.waves[0][0].clone();
        let mut seen = report(&r, Phase::Pulling);
        seen.get_mut(&h).unwrap().held = Some(LeftOut::Cordoned);
        r.evaluate(&seen, 10, Duration::from_secs(5));
        assert!(!r.left_out.contains_key(&h), "it got the release already");
        assert_eq!(r.assigned(&h), Some(2));
    }

    #[test]
    fn manual_promotion_waits_after_the_canary() {
        let mut r = plan("[rollout]\nmanual_promotion = true\n", 3);
        r.evaluate(&report(&r, Phase::Live), 10, Duration::from_secs(60));
        assert_eq!(r.state, RolloutState::AwaitingPromotion);
        r.promoted = true;
        r.evaluate(&report(&r, Phase::Live), 20, Duration::from_secs(60));
        assert_eq!(r.started, 2);
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
