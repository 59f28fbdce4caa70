//! A release's rollout, planned once: the first replica to need it plans it from the hosts
//! its selector picks (leaving out cordoned, drained and down ones) and stores it; the
//! others read that one.

use super::plan::{LeftOut, PlanParams, Rollout};
use super::{now_ms, parse, to_doc, RolloutError};
use crate::api::AppState;
use crate::defaults;
use crate::store::{HostRecord, ReleaseRecord};
use slipway_proto::api::{HostLifecycle, RolloutState};
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

/// The rollout of release `rec`, planned and stored when it has none yet. Any replica may
/// plan it; the first to store it wins and the others read that one.
pub async fn ensure(
    state: &AppState,
    rec: &ReleaseRecord,
    rel: &slipway_proto::Release,
) -> Result<Rollout, RolloutError> {
    let spec = &rel.spec;
    let store = &state.store;
    if let Some(r) = store.rollout(&rec.app, rec.seq).await? {
        return parse(&r.app, r.seq, &r.doc);
    }
    let now = now_ms();
    let prev = match store.latest_rollout(&rec.app).await? {
        Some(p) if p.seq < rec.seq => Some((p.rev, parse(&p.app, p.seq, &p.doc)?)),
        _ => None,
    };
    let doc = match &prev {
        Some((_, p))
            if p.rollback_wanted
                && rec.rollback_of.is_some()
                && p.rollback_seq.is_none_or(|s| s == rec.seq) =>
        {
            Rollout::rollback_of(p, rec.seq, now)
        }
        _ => {
            let selector = &spec.rollout.selector;
            let all = store.hosts().await?;
            let lifecycle: HashMap<&str, HostLifecycle> =
                all.iter().map(|h| (h.host.as_str(), h.lifecycle)).collect();
            let wall = SystemTime::now();
            let (selected, left_out) = partition_held(
                all.iter()
                    .filter(|h| selector.iter().all(|(k, v)| h.labels.get(k) == Some(v))),
                |h| state.rollouts.is_down(h.last_seen, wall),
            );
            let canaries = selected
                .iter()
                .filter(|h| super::canary::is_canary(&h.labels))
                .map(|h| h.host.clone())
                .collect();
            let hosts: Vec<String> = selected.into_iter().map(|h| h.host.clone()).collect();
            let (base, stable) = match &prev {
                Some((_, p)) => {
                    let waves = p.wave_index();
                    let base = p
                        .waves
                        .iter()
                        .flatten()
                        .chain(p.base.keys())
                        .chain(p.left_out.keys())
                        .chain(hosts.iter())
                        .chain(left_out.keys())
                        .filter_map(|h| {
                            let now = lifecycle.get(h.as_str()).copied().unwrap_or_default();
                            p.assigned_to_in(h, now, || waves.get(h.as_str()).copied())
                                .map(|s| (h.clone(), s))
                        })
                        .collect();
                    (base, p.stable_after())
                }
                // The app's first rollout: an earlier release (made before rollouts existed)
                // went out completely.
                None => {
                    let earlier = store
                        .releases(&rec.app)
                        .await?
                        .iter()
                        .filter(|r| r.seq < rec.seq)
                        .map(|r| r.seq)
                        .max();
                    (BTreeMap::new(), earlier)
                }
            };
            let mut doc = Rollout::plan(PlanParams {
                app: &rec.app,
                seq: rec.seq,
                spec,
                hosts,
                canaries,
                left_out,
                base,
                stable,
                deploy_margin: state.rollouts.cfg.deploy_margin,
                now_ms: now,
            });
            let (k, v) = crate::release::ONE_WAVE;
            if rel.annotations.get(k).map(String::as_str) == Some(v) {
                doc.into_one_wave();
            }
            doc
        }
    };
    let wall = SystemTime::now();
    if !store
        .insert_rollout(&rec.app, rec.seq, &to_doc(&doc), wall)
        .await?
    {
        let r = store
            .rollout(&rec.app, rec.seq)
            .await?
            .ok_or_else(|| RolloutError::Release {
                app: rec.app.clone(),
                seq: rec.seq,
                reason: "rollout vanished after it was stored".into(),
            })?;
        return parse(&r.app, r.seq, &r.doc);
    }
    // The hosts of each wave are logged in full up to a screenful; a fleet of thousands
    // would otherwise write a line of hundreds of kilobytes per release.
    let sizes: Vec<usize> = doc.waves.iter().map(Vec::len).collect();
    if sizes.iter().sum::<usize>() <= defaults::LOGGED_WAVE_HOSTS {
        tracing::info!(app = %rec.app, seq = rec.seq, kind = doc.kind.as_str(), waves = ?doc.waves, "rollout planned");
    } else {
        tracing::info!(app = %rec.app, seq = rec.seq, kind = doc.kind.as_str(), wave_sizes = ?sizes, "rollout planned");
        tracing::debug!(app = %rec.app, seq = rec.seq, waves = ?doc.waves, "rollout planned: hosts");
    }
    if doc.started > 0 {
        super::driver::wave_started(state, &doc).await;
    }
    if let Some((rev, mut p)) = prev {
        if p.is_active() {
            p.state = RolloutState::Superseded;
            p.reason = Some(format!("superseded by seq {}", rec.seq));
            let _ = store
                .update_rollout(&p.app, p.seq, rev, &to_doc(&p), wall)
                .await;
        }
    }
    let _ = store.notify_changed().await;
    Ok(doc)
}

/// Splits the selected hosts into those a new rollout plans for and those it leaves out:
/// cordoned, drained, or down (`is_down`).
fn partition_held<'a>(
    selected: impl Iterator<Item = &'a HostRecord>,
    is_down: impl Fn(&HostRecord) -> bool,
) -> (Vec<&'a HostRecord>, BTreeMap<String, LeftOut>) {
    let mut planned = Vec::new();
    let mut left_out = BTreeMap::new();
    for h in selected {
        let why = match h.lifecycle {
            HostLifecycle::Cordoned => Some(LeftOut::Cordoned),
            HostLifecycle::Drained => Some(LeftOut::Drained),
            HostLifecycle::Active if is_down(h) => Some(LeftOut::Down),
            HostLifecycle::Active => None,
        };
        match why {
            Some(why) => {
                left_out.insert(h.host.clone(), why);
            }
            None => planned.push(h),
        }
    }
    (planned, left_out)
}
