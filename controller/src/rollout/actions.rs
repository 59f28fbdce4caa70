//! What operators do to a rollout (`promote`, `pause`, `resume`, `abort`) and what they see
//! of it (the plan, each host's phase, why it halted).

use super::{parse, to_doc, Rollout};
use crate::api::{rfc3339, AppState};
use crate::error::{ApiError, ApiResult};
use slipway_proto::api::{RolloutAction, RolloutHost, RolloutInfo, RolloutState};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Compare-and-set attempts before an action gives up on a busy rollout.
const CAS_ATTEMPTS: usize = 8;

fn no_rollout(app: &str) -> ApiError {
    ApiError::NotFound(format!(
        "app `{app}` has no rollout: release it first (slipway release {app} --image REF)"
    ))
}

/// Applies `action` to the newest rollout of `app`; returns it as changed.
pub async fn apply(
    state: &AppState,
    actor: &str,
    app: &str,
    action: RolloutAction,
) -> ApiResult<RolloutInfo> {
    for _ in 0..CAS_ATTEMPTS {
        let rec = state
            .store
            .latest_rollout(app)
            .await?
            .ok_or_else(|| no_rollout(app))?;
        let mut doc = parse(&rec.app, rec.seq, &rec.doc).map_err(internal)?;
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
            state.rollouts.changed(state).await;
            return info(state, app).await;
        }
    }
    Err(ApiError::Conflict(format!(
        "rollout of `{app}` kept changing under `{}`; try again",
        action_name(action)
    )))
}

fn action_name(a: RolloutAction) -> &'static str {
    match a {
        RolloutAction::Promote => "promote",
        RolloutAction::Pause => "pause",
        RolloutAction::Resume => "resume",
        RolloutAction::Abort => "abort",
    }
}

fn change(doc: &mut Rollout, action: RolloutAction, actor: &str) -> ApiResult<()> {
    let refuse = |what: &str| {
        ApiError::Conflict(format!(
            "rollout of {} seq {} is {}: cannot {what}",
            doc.app, doc.seq, doc.state
        ))
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

fn internal(e: super::RolloutError) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The newest rollout of `app` as operators see it.
pub async fn info(state: &AppState, app: &str) -> ApiResult<RolloutInfo> {
    let rec = state
        .store
        .latest_rollout(app)
        .await?
        .ok_or_else(|| no_rollout(app))?;
    let doc = parse(&rec.app, rec.seq, &rec.doc).map_err(internal)?;
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
            desired_seq: doc.assigned(h),
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
    })
}
