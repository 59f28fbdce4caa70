//! The rollout driver: on the replica that holds the lead, every tick, read what each host of
//! each rollout in progress reported, move the rollout on, and when it halted make the
//! rollback release (a higher seq of the last good release's image).

use super::isolate::Stage;
use super::plan::{LeftOut, Rollout, Seen};
use super::{now_ms, parse, to_doc, RolloutError};
use crate::api::AppState;
use crate::store::RolloutRecord;
use slipway_proto::api::{HostLifecycle, RolloutState};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Who the driver's changes are recorded as, in the audit log and `slipway.released-by`.
pub const ACTOR: &str = "controller";

/// Runs until `shutdown`; acts only while this replica leads.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut leading = false;
    loop {
        match state.store.try_lead().await {
            Ok(now) => {
                if now != leading {
                    tracing::info!(leading = now, "rollout driver lead changed");
                    leading = now;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check the rollout lead");
                leading = false;
            }
        }
        state.rollouts.set_leading(leading);
        let mut wait = state.rollouts.cfg.tick;
        if leading {
            match tick(&state).await {
                Ok(t) => {
                    if t.changed {
                        state.rollouts.changed(&state).await;
                    }
                    if let Some(due) = t.due_ms {
                        let ms = (due - super::now_ms()).max(0) as u64;
                        wait = wait.min(Duration::from_millis(ms));
                    }
                }
                Err(e) => tracing::error!(error = %e, "rollout tick failed; retrying"),
            }
        }
        // The next look: at the tick, when a host reports, or when a pause ends, whichever
        // comes first, so a wave starts as soon as the one before it allows.
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => {}
            _ = state.rollouts.report.notified() => {}
        }
    }
}

/// What one pass over the rollouts found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Any rollout changed.
    pub changed: bool,
    /// The earliest time (ms since the epoch) a rollout waits for, e.g. a pause's end.
    pub due_ms: Option<i64>,
}

/// One pass over every app's newest rollout.
pub async fn tick(state: &AppState) -> Result<Tick, RolloutError> {
    let mut out = Tick::default();
    let hosts = state.store.hosts().await?;
    let now = SystemTime::now();
    mark_down(state, &hosts, now).await?;
    let apps = state.store.apps().await?;
    if apps.is_empty() {
        return Ok(out);
    }
    for app in apps {
        // One app's corrupt rollout, release or store row never stops the others.
        let mut due = None;
        match tick_app(state, &app.name, &hosts, now, &mut due).await {
            Ok(c) => {
                state.rollouts.errors.ok(Stage::Driver, &app.name);
                out.changed |= c;
                out.due_ms = match (out.due_ms, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err(e) => state.rollouts.errors.failed(Stage::Driver, &app.name, &e),
        }
    }
    Ok(out)
}

/// Moves one app's newest rollout on; true when it changed. `due` is set to when it next
/// waits for the clock (a pause's end).
async fn tick_app(
    state: &AppState,
    app: &str,
    hosts: &[crate::store::HostRecord],
    now: SystemTime,
    due: &mut Option<i64>,
) -> Result<bool, RolloutError> {
    let mut changed = false;
    let Some(rec) = state.store.latest_rollout(app).await? else {
        return Ok(false);
    };
    let mut doc = parse(&rec.app, rec.seq, &rec.doc)?;
    if doc.is_active() {
        let reports: BTreeMap<String, _> = state
            .store
            .statuses(Some(app))
            .await?
            .into_iter()
            .map(|s| (s.host, (s.seq, s.phase)))
            .collect();
        let seen: BTreeMap<String, Seen> = hosts
            .iter()
            .map(|h| {
                let silent = now.duration_since(h.last_seen).unwrap_or_default();
                let held = match h.lifecycle {
                    HostLifecycle::Cordoned => Some(LeftOut::Cordoned),
                    HostLifecycle::Drained => Some(LeftOut::Drained),
                    HostLifecycle::Active if state.rollouts.is_down(h.last_seen, now) => {
                        Some(LeftOut::Down)
                    }
                    HostLifecycle::Active => None,
                };
                (
                    h.host.clone(),
                    Seen {
                        report: reports.get(&h.host).cloned(),
                        silent_ms: Some(silent.as_millis() as u64),
                        held,
                    },
                )
            })
            .collect();
        let (was, started) = (doc.state, doc.started);
        if doc.evaluate(&seen, now_ms(), state.rollouts.cfg.silent_after) {
            if !save(state, &rec, &doc).await? {
                return Ok(false); // an operator changed it meanwhile: next tick
            }
            changed = true;
            if doc.started != started {
                wave_started(state, &doc).await;
            }
            if doc.state != was {
                crate::events::emit(
                    state,
                    &format!("rollout.{}", doc.state),
                    Some(&doc.app),
                    serde_json::json!({"seq": doc.seq, "reason": doc.reason}),
                )
                .await;
                tracing::info!(app = %doc.app, seq = doc.seq, state = %doc.state, reason = doc.reason.as_deref().unwrap_or(""), "rollout state changed");
                let _ = state
                    .store
                    .audit(
                        ACTOR,
                        &format!("rollout.{}", doc.state),
                        &format!("rollout/{}/{}", doc.app, doc.seq),
                        doc.reason.as_deref().unwrap_or(""),
                        now,
                    )
                    .await;
            }
            if doc.state == RolloutState::Halted {
                // Saved under a new revision: re-read before the next write.
                return Ok(true);
            }
        }
    }
    *due = doc.next_due_ms();
    if doc.state == RolloutState::Halted && doc.rollback_wanted && doc.rollback_seq.is_none() {
        changed |= roll_back(state, &rec, doc).await?;
    }
    Ok(changed)
}

/// Marks the hosts silent past `host_down_after` as down, once each, with a `host.down` event:
/// new rollouts leave them out whether or not this ran; this is what operators see.
async fn mark_down(
    state: &AppState,
    hosts: &[crate::store::HostRecord],
    now: SystemTime,
) -> Result<(), RolloutError> {
    for h in hosts {
        if h.down_at.is_some() || !state.rollouts.is_down(h.last_seen, now) {
            continue;
        }
        if state.store.mark_host_down(&h.host, now).await? {
            let silent = now.duration_since(h.last_seen).unwrap_or_default();
            let silent =
                humantime::format_duration(std::time::Duration::from_secs(silent.as_secs()));
            tracing::warn!(host = %h.host, %silent, "host down: no poll or report; left out of new rollouts");
            crate::events::emit(
                state,
                "host.down",
                None,
                serde_json::json!({"host": h.host, "silent": silent.to_string(),
                    "last_seen": crate::api::rfc3339(h.last_seen)}),
            )
            .await;
        }
    }
    Ok(())
}

/// Records that the newest started wave of `doc` began.
pub(crate) async fn wave_started(state: &AppState, doc: &Rollout) {
    let n = doc.started;
    crate::events::emit(
        state,
        "wave.started",
        Some(&doc.app),
        serde_json::json!({"seq": doc.seq, "wave": n, "waves": doc.waves.len(),
            "hosts": doc.waves.get(n.wrapping_sub(1))}),
    )
    .await;
}

async fn save(state: &AppState, rec: &RolloutRecord, doc: &Rollout) -> Result<bool, RolloutError> {
    Ok(state
        .store
        .update_rollout(&rec.app, rec.seq, rec.rev, &to_doc(doc), SystemTime::now())
        .await?)
}

/// Makes the rollback release of a halted rollout and records its seq.
async fn roll_back(
    state: &AppState,
    rec: &RolloutRecord,
    mut doc: Rollout,
) -> Result<bool, RolloutError> {
    let latest = state.store.latest_seq(&doc.app).await?;
    let err = |reason: String| RolloutError::Release {
        app: doc.app.clone(),
        seq: doc.seq,
        reason,
    };
    if latest > doc.seq {
        // Made before a crash, or an operator released since: do not make another.
        let newer = state.store.release(&doc.app, latest).await?;
        doc.rollback_seq = newer.and_then(|r| r.rollback_of.map(|_| r.seq));
        doc.rollback_wanted = doc.rollback_seq.is_some();
        return save(state, rec, &doc).await;
    }
    let Some(stable) = doc.stable else {
        doc.rollback_wanted = false;
        doc.reason = Some(format!(
            "{}; no earlier release went out completely, so there is nothing to roll back to \
             (hosts keep what they run)",
            doc.reason.as_deref().unwrap_or("halted")
        ));
        return save(state, rec, &doc).await;
    };
    let made = crate::release::rollback(state, ACTOR, &doc.app, Some(stable), false)
        .await
        .map_err(|e| err(format!("automatic rollback to seq {stable}: {e}")))?;
    tracing::warn!(app = %doc.app, halted = doc.seq, rollback = made.seq, to = stable, "rollout halted; rolled back");
    // Re-read: the view builder may have touched nothing here, but be safe with the revision.
    let Some(fresh) = state.store.rollout(&doc.app, doc.seq).await? else {
        return Ok(true);
    };
    let mut cur = parse(&fresh.app, fresh.seq, &fresh.doc)?;
    cur.rollback_seq = Some(made.seq);
    save(state, &fresh, &cur).await?;
    crate::events::emit(
        state,
        "rollout.rolled-back",
        Some(&doc.app),
        serde_json::json!({"seq": doc.seq, "rollback_seq": made.seq, "to_seq": stable}),
    )
    .await;
    Ok(true)
}
