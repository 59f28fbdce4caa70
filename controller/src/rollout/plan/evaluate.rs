//! Evaluation: host reports and the clock move a rollout on, wave by wave, or halt it.

use super::{Kind, LeftOut, Rollout, Seen};
use slipway_proto::api::{Phase, RolloutState};
use std::collections::BTreeMap;
use std::time::Duration;

impl Rollout {
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
        if !self.ahead && self.started > 0 {
            self.ahead = self.waves[0].iter().all(|h| {
                let switched =
                    seen.get(h)
                        .and_then(|s| s.report.as_ref())
                        .is_some_and(|(seq, p)| {
                            *seq == self.seq
                                && !matches!(
                                    p,
                                    Phase::Pulling | Phase::Starting | Phase::HealthChecking
                                )
                        });
                switched || self.live.contains(h) || self.is_settled(h)
            });
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
    use crate::rollout::plan::tests::{plan, report};

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
    fn later_waves_hear_of_the_release_ahead_once_the_first_wave_switched() {
        let mut r = plan("[rollout]\nbatch_size = 2\n", 5);
        let silent = Duration::from_secs(60);
        assert!(!r.ahead, "not while the canary pulls");
        for (t, p) in [Phase::Pulling, Phase::Starting, Phase::HealthChecking]
            .into_iter()
            .enumerate()
        {
            r.evaluate(&report(&r, p.clone()), 10 + t as i64, silent);
            assert!(!r.ahead, "not while the canary is {p}");
        }
        // Baking: its traffic is on the new container; its start is over.
        assert!(r.evaluate(&report(&r, Phase::Baking), 20, silent));
        assert!(r.ahead);
        assert_eq!(r.started, 1, "the second wave has not started");
        // A canary that vanished before pulling does not hold the others back either.
        let mut r = plan("[rollout]\nbatch_size = 2\n", 5);
        let mut gone = report(&r, Phase::Pulling);
        gone.values_mut().for_each(|s| {
            s.report = None;
            s.silent_ms = Some(120_000);
        });
        r.evaluate(&gone, 10, silent);
        assert!(r.ahead);
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
    fn manual_promotion_waits_after_the_canary() {
        let mut r = plan("[rollout]\nmanual_promotion = true\n", 3);
        r.evaluate(&report(&r, Phase::Live), 10, Duration::from_secs(60));
        assert_eq!(r.state, RolloutState::AwaitingPromotion);
        r.promoted = true;
        r.evaluate(&report(&r, Phase::Live), 20, Duration::from_secs(60));
        assert_eq!(r.started, 2);
    }
}
