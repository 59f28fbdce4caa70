//! What operators do to a rollout (`promote`, `pause`, `resume`, `abort`) and what they see
//! of it (the plan, each host's phase, why it halted).

use super::{parse, to_doc, Rollout};
use crate::api::{rfc3339, AppState};
use crate::release::{ReleaseError, ReleaseResult};
use slipway_proto::api::{RolloutAction, RolloutHost, RolloutInfo, RolloutState};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Compare-and-set attempts before an action gives up on a busy rollout.
const CAS_ATTEMPTS: usize = 8;

fn no_rollout(app: &str) -> ReleaseError {
    ReleaseError::NoRollout { app: app.into() }
}

/// Applies `action` to the newest rollout of `app` as `actor`; returns it as changed.
pub async fn apply(
    state: &AppState,
    actor: &str,
    app: &str,
    action: RolloutAction,
) -> ReleaseResult<RolloutInfo> {
    for _ in 0..CAS_ATTEMPTS {
        let rec = state
            .store
            .latest_rollout(app)
            .await?
            .ok_or_else(|| no_rollout(app))?;
        let mut doc = parse(&rec.app, rec.seq, &rec.doc)?;
        change(&mut doc, action, actor)?;
        if state
            .store
            .update_rollout(&rec.app, rec.seq, rec.rev, &to_doc(&doc), SystemTime::now())
            .await?
        {
            state
                .store
                .audit(
                    actor,
                    &format!("rollout.{}", action_name(action)),
                    &format!("rollout/{app}/{}", rec.seq),
                    &format!("now {}", doc.state),
                    SystemTime::now(),
                )
                .await?;
            crate::events::emit(
                state,
                &format!("rollout.{}", past_tense(action)),
                Some(app),
                serde_json::json!({"seq": rec.seq, "by": actor, "state": doc.state}),
            )
            .await;
            state.rollouts.changed(state).await;
            return info(state, app).await;
        }
    }
    Err(ReleaseError::RolloutBusy {
        app: app.into(),
        action: action_name(action),
    })
}

fn action_name(a: RolloutAction) -> &'static str {
    match a {
        RolloutAction::Promote => "promote",
        RolloutAction::Pause => "pause",
        RolloutAction::Resume => "resume",
        RolloutAction::Abort => "abort",
    }
}

fn past_tense(a: RolloutAction) -> &'static str {
    match a {
        RolloutAction::Promote => "promoted",
        RolloutAction::Pause => "paused",
        RolloutAction::Resume => "resumed",
        RolloutAction::Abort => "aborted",
    }
}

fn change(doc: &mut Rollout, action: RolloutAction, actor: &str) -> ReleaseResult<()> {
    let refuse = |what: &str| ReleaseError::RolloutRefused {
        app: doc.app.clone(),
        seq: doc.seq,
        state: doc.state,
        action: what.to_string(),
    };
    if !doc.is_active() {
        return Err(refuse(action_name(action)));
    }
    match action {
        RolloutAction::Promote => {
            doc.promoted = true;
            doc.skip_pause = true;
            if doc.state == RolloutState::AwaitingPromotion {
                doc.state = RolloutState::Running;
                doc.reason = None;
            }
        }
        RolloutAction::Pause => {
            doc.state = RolloutState::Paused;
            doc.reason = Some(format!("paused by {actor}"));
        }
        RolloutAction::Resume => {
            if doc.state != RolloutState::Paused {
                return Err(refuse("resume (it is not paused)"));
            }
            doc.state = RolloutState::Running;
            doc.reason = None;
        }
        RolloutAction::Abort => doc.halt(format!("aborted by {actor}")),
    }
    Ok(())
}

/// The newest rollout of `app` as operators see it.
pub async fn info(state: &AppState, app: &str) -> ReleaseResult<RolloutInfo> {
    info_of(state, app, None).await
}

/// The rollout of release `seq` of `app` (the newest when `None`) as operators see it.
pub async fn info_of(state: &AppState, app: &str, seq: Option<u64>) -> ReleaseResult<RolloutInfo> {
    let rec = match seq {
        Some(seq) => state.store.rollout(app, seq).await?,
        None => state.store.latest_rollout(app).await?,
    }
    .ok_or_else(|| no_rollout(app))?;
    let doc = parse(&rec.app, rec.seq, &rec.doc)?;
    let reports: BTreeMap<String, _> = state
        .store
        .statuses(Some(app))
        .await?
        .into_iter()
        .map(|s| (s.host.clone(), s))
        .collect();
    let hosts = doc
        .waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |h| (i, h)))
        .map(|(wave, h)| RolloutHost {
            host: h.clone(),
            wave,
            desired_seq: doc.assigned_in(h, || Some(wave)),
            reported_seq: reports.get(h).map(|s| s.seq),
            phase: reports.get(h).map(|s| s.phase.clone()),
            expired_at: reports.get(h).and_then(|s| s.expired_at).map(rfc3339),
            failed: doc.failed.get(h).cloned(),
        })
        .collect();
    Ok(RolloutInfo {
        app: doc.app.clone(),
        seq: doc.seq,
        kind: doc.kind.as_str().into(),
        state: doc.state,
        waves: doc.waves.clone(),
        started: doc.started,
        failures: doc.failed.len() as u32,
        max_failures: doc.max_failures,
        reason: doc.reason.clone(),
        stable_seq: doc.stable,
        rollback_seq: doc.rollback_seq,
        hosts,
        updated_at: rfc3339(rec.updated_at),
        left_out: doc
            .left_out
            .iter()
            .map(|(h, why)| (h.clone(), why.as_str().to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::PlanParams;
    use std::time::Duration;

    fn rollout() -> Rollout {
        let spec = slipway_proto::AppSpec::from_toml(
            "name = \"web\"\nimage = \"r/web\"\nlisten = 8080\ncontainer_port = 80\n",
        )
        .unwrap();
        Rollout::plan(PlanParams {
            app: "web",
            seq: 2,
            spec: &spec,
            hosts: vec!["h1".into(), "h2".into()],
            canaries: Default::default(),
            left_out: BTreeMap::new(),
            base: BTreeMap::new(),
            stable: Some(1),
            deploy_margin: Duration::from_secs(60),
            now_ms: 0,
        })
    }

    #[test]
    fn pause_and_resume_name_the_actor_and_resume_needs_a_pause() {
        let mut doc = rollout();
        assert_eq!(doc.state, RolloutState::Running);
        let err = change(&mut doc, RolloutAction::Resume, "ana").unwrap_err();
        assert!(matches!(err, ReleaseError::RolloutRefused { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "rollout of web seq 2 is running: cannot resume (it is not paused)"
        );
        change(&mut doc, RolloutAction::Pause, "ana").unwrap();
        assert_eq!(doc.state, RolloutState::Paused);
        assert_eq!(doc.reason.as_deref(), Some("paused by ana"));
        change(&mut doc, RolloutAction::Resume, "ana").unwrap();
        assert_eq!(
            (doc.state, doc.reason.as_deref()),
            (RolloutState::Running, None)
        );
    }

    #[test]
    fn promote_skips_the_pause_and_abort_halts_for_a_rollback() {
        let mut doc = rollout();
        doc.state = RolloutState::AwaitingPromotion;
        change(&mut doc, RolloutAction::Promote, "ana").unwrap();
        assert!(doc.promoted && doc.skip_pause);
        assert_eq!(doc.state, RolloutState::Running);
        change(&mut doc, RolloutAction::Abort, "bo").unwrap();
        assert_eq!(doc.state, RolloutState::Halted);
        assert_eq!(doc.reason.as_deref(), Some("aborted by bo"));
        assert!(doc.rollback_wanted);
    }

    #[test]
    fn a_finished_rollout_refuses_every_action() {
        for action in [
            RolloutAction::Promote,
            RolloutAction::Pause,
            RolloutAction::Resume,
            RolloutAction::Abort,
        ] {
            let mut doc = rollout();
            doc.state = RolloutState::Done;
            let err = change(&mut doc, action, "ana").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "rollout of web seq 2 is done: cannot {}",
                    action_name(action)
                )
            );
            assert_eq!(doc.state, RolloutState::Done, "nothing changed");
        }
    }
}
