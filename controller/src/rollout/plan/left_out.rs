//! Left-out hosts: why a host gets nothing from a rollout, and leaving out held hosts.

use super::{Rollout, Seen};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub(super) fn by_operator(&self) -> bool {
        matches!(self, LeftOut::Cordoned | LeftOut::Drained)
    }
}

impl Rollout {
    /// Failed or left out: nothing more to wait for.
    pub(super) fn is_settled(&self, host: &str) -> bool {
        self.failed.contains_key(host) || self.left_out.contains_key(host)
    }

    /// Leaves out the hosts held since the plan was made: every held host of a wave not
    /// started yet, and a host of a started wave, not live yet, that was drained, went down or
    /// was removed (a cordoned one got the release already and carries on). A host no longer
    /// registered counts as removed.
    pub(super) fn leave_out_held(&mut self, seen: &BTreeMap<String, Seen>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::tests::{plan, report};
    use slipway_proto::api::{HostLifecycle, Phase, RolloutState};
    use std::time::Duration;

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
}
