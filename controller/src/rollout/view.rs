//! Which release each host is told to run, per app: hosts in the started waves get the new
//! release, the others keep what they had, hosts outside the plan (registered since) get the
//! last release that went out completely. Rebuilt from the store whenever a release is
//! published, a rollout moves, or another replica says something changed.

use super::isolate::Stage;
use super::plan::{LeftOut, PlanParams, Rollout};
use super::{now_ms, parse, to_doc, RolloutError};
use crate::api::AppState;
use crate::defaults;
use crate::publish::{release_body, Snapshot};
use crate::store::HostRecord;
use crate::store::ReleaseRecord;
use axum::body::Bytes;
use slipway_proto::api::{DesiredSetBody, HostLifecycle, RolloutState};
use slipway_proto::Envelope;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// One app's assignment of releases to hosts.
#[derive(Debug, Default, Clone)]
pub struct AppView {
    pub selector: BTreeMap<String, String>,
    /// Hosts of the plan (or its base) -> the seq they run; `None`: nothing yet.
    pub per_host: HashMap<String, Option<u64>>,
    /// What every other selected host gets.
    pub default: Option<u64>,
    /// Seq -> signed envelope and its fingerprint (changes on every re-signature).
    pub envelopes: HashMap<u64, (Envelope, String)>,
    /// Seqs whose release pins secrets: their desired sets are sealed per host.
    pub sealed: HashSet<u64>,
}

/// Every app's assignment, and the published snapshot it was built after.
#[derive(Debug, Default)]
pub struct View {
    pub apps: BTreeMap<String, AppView>,
    /// Drained hosts: their desired set is empty, so their agents discard every app.
    pub drained: HashSet<String>,
    pub from: Option<Arc<Snapshot>>,
    /// Serialized desired sets that are the same for every host holding them (no secrets),
    /// by version: a publish that wakes every long-poll serializes each distinct set once.
    /// Dropped with the view, so never stale.
    bodies: Mutex<HashMap<String, Bytes>>,
}

/// Distinct desired sets cached per view; beyond this (hosts in many different waves and
/// selectors) each is serialized per answer.
const BODIES_CACHED: usize = 1024;

/// What a host is told: its releases, and whether any must be sealed to it.
pub struct Selected<'a> {
    pub version: String,
    releases: Vec<(&'a str, &'a Envelope)>,
    pub sealed: bool,
}

impl View {
    /// The releases aimed at `host` (with `labels`) now, and the version token of that set.
    pub fn select<'a>(&'a self, host: &str, labels: &BTreeMap<String, String>) -> Selected<'a> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut releases = Vec::new();
        let mut sealed = false;
        let apps = if self.drained.contains(host) {
            None
        } else {
            Some(&self.apps)
        };
        for (app, v) in apps.into_iter().flatten() {
            if !v.selector.iter().all(|(k, val)| labels.get(k) == Some(val)) {
                continue;
            }
            let seq = v.per_host.get(host).copied().unwrap_or(v.default);
            let Some(((env, fp), seq)) = seq.and_then(|s| v.envelopes.get(&s).zip(Some(s))) else {
                continue;
            };
            ctx.update(app.as_bytes());
            ctx.update(b"\0");
            ctx.update(fp.as_bytes());
            ctx.update(b"\n");
            sealed |= v.sealed.contains(&seq);
            releases.push((app.as_str(), env));
        }
        Selected {
            version: hex::encode(&ctx.finish().as_ref()[..12]),
            releases,
            sealed,
        }
    }

    /// The releases aimed at `host` (with `labels`) now, and the version token of that set.
    pub fn desired_for(&self, host: &str, labels: &BTreeMap<String, String>) -> DesiredSetBody {
        self.select(host, labels).body()
    }

    /// The JSON of a set that needs no sealing, when an answer to another host made it.
    pub fn cached_body(&self, version: &str) -> Option<Bytes> {
        self.bodies
            .lock()
            .expect("bodies lock")
            .get(version)
            .cloned()
    }

    /// Keeps the JSON of `version`'s set for the next host holding it.
    pub fn cache_body(&self, version: &str, json: Bytes) {
        let mut b = self.bodies.lock().expect("bodies lock");
        if b.len() < BODIES_CACHED {
            b.insert(version.to_string(), json);
        }
    }

    /// Reads every app's newest release and its rollout (planning it when it has none yet).
    pub async fn build(state: &AppState) -> Result<View, RolloutError> {
        let from = state.publisher.current();
        let mut apps = BTreeMap::new();
        let before = state.rollouts.subscribe().borrow().clone();
        let held: HashMap<String, HostLifecycle> =
            state.store.held_hosts().await?.into_iter().collect();
        for rec in state.store.latest_releases().await? {
            // One app's broken release or rollout never empties another app's desired set;
            // its hosts keep what they were last told.
            match Self::build_app(state, &rec, &held).await {
                Ok(v) => {
                    state.rollouts.errors.ok(Stage::View, &rec.app);
                    apps.insert(rec.app.clone(), v);
                }
                Err(e) => {
                    state.rollouts.errors.failed(Stage::View, &rec.app, &e);
                    if let Some(v) = before.apps.get(&rec.app) {
                        apps.insert(rec.app.clone(), v.clone());
                    }
                }
            }
        }
        Ok(View {
            apps,
            drained: held
                .into_iter()
                .filter(|(_, l)| *l == HostLifecycle::Drained)
                .map(|(h, _)| h)
                .collect(),
            from: Some(from),
            bodies: Mutex::default(),
        })
    }

    /// One app's assignment, from its newest release `rec`.
    /// `held`: the hosts whose lifecycle is not active.
    async fn build_app(
        state: &AppState,
        rec: &ReleaseRecord,
        held: &HashMap<String, HostLifecycle>,
    ) -> Result<AppView, RolloutError> {
        let (env, rel) = envelope(rec)?;
        let doc = ensure(state, rec, &rel).await?;
        let mut v = AppView {
            selector: rel.spec.rollout.selector.clone(),
            default: doc.default_seq(),
            ..Default::default()
        };
        let waves = doc.wave_index();
        for h in doc
            .waves
            .iter()
            .flatten()
            .chain(doc.base.keys())
            .chain(doc.left_out.keys())
        {
            let now = held.get(h).copied().unwrap_or_default();
            let seq = doc.assigned_to_in(h, now, || waves.get(h.as_str()).copied());
            v.per_host.insert(h.clone(), seq);
        }
        let mut seqs: Vec<u64> = v.per_host.values().flatten().copied().collect();
        seqs.extend(v.default);
        seqs.sort_unstable();
        seqs.dedup();
        for seq in seqs {
            let (env, pins) = if seq == rec.seq {
                (
                    (env.clone(), fingerprint(&rec.envelope)),
                    !rel.spec.secret_versions.is_empty(),
                )
            } else {
                match state.store.release(&rec.app, seq).await? {
                    Some(r) => {
                        let (e, old) = envelope(&r)?;
                        (
                            (e, fingerprint(&r.envelope)),
                            !old.spec.secret_versions.is_empty(),
                        )
                    }
                    None => continue,
                }
            };
            if pins {
                v.sealed.insert(seq);
            }
            v.envelopes.insert(seq, env);
        }
        Ok(v)
    }
}

impl Selected<'_> {
    /// The desired set's body (secrets not sealed yet).
    pub fn body(&self) -> DesiredSetBody {
        DesiredSetBody {
            version: self.version.clone(),
            releases: self
                .releases
                .iter()
                .map(|(app, env)| (app.to_string(), (*env).clone()))
                .collect(),
            ..Default::default()
        }
    }
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

fn fingerprint(envelope: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        envelope.as_bytes(),
    ))
}

fn envelope(rec: &ReleaseRecord) -> Result<(Envelope, slipway_proto::Release), RolloutError> {
    let bad = |reason: String| RolloutError::Release {
        app: rec.app.clone(),
        seq: rec.seq,
        reason,
    };
    let env = Envelope::from_json(rec.envelope.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let rel = release_body(&env).map_err(|e| bad(e.to_string()))?;
    Ok((env, rel))
}

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

/// Rebuilds the view on every change until `shutdown`.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut published = state.publisher.subscribe();
    let mut remote = state.store.changes();
    // The snapshot last published because another replica said so (not to be echoed back).
    let mut from_remote: Option<Arc<Snapshot>> = None;
    loop {
        match View::build(&state).await {
            Ok(v) => {
                state.rollouts.view.send_replace(Arc::new(v));
            }
            Err(e) => {
                tracing::error!(error = %e, "rebuilding the rollout view failed; retrying");
                tokio::time::sleep(state.rollouts.cfg.tick).await;
                continue;
            }
        }
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            r = published.changed() => {
                if r.is_err() {
                    return;
                }
                let cur = published.borrow_and_update().clone();
                if !from_remote.as_ref().is_some_and(|s| Arc::ptr_eq(s, &cur)) {
                    // A release or signature made here: the other replicas must hear of it.
                    let _ = state.store.notify_changed().await;
                }
            }
            _ = state.rollouts.poke.notified() => {}
            _ = async {
                match remote.as_mut() {
                    Some(rx) => { let _ = rx.changed().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                if let Err(e) = state.publisher.publish(state.store.as_ref()).await {
                    tracing::warn!(error = %e, "refreshing published releases failed");
                }
                let cur = state.publisher.current();
                published.borrow_and_update();
                from_remote = Some(cur);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(payload: &str) -> Envelope {
        Envelope {
            payload_type: "application/vnd.slipway.release+json".into(),
            payload: payload.into(),
            signatures: Vec::new(),
        }
    }

    fn view(sealed: bool) -> View {
        let mut web = AppView {
            default: Some(1),
            ..Default::default()
        };
        web.envelopes.insert(1, (env("one"), "fp1".into()));
        web.envelopes.insert(2, (env("two"), "fp2".into()));
        web.per_host.insert("h2".into(), Some(2));
        if sealed {
            web.sealed.insert(2);
        }
        View {
            apps: [("web".to_string(), web)].into(),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_holding_the_same_set_share_a_version_and_only_unsealed_sets_say_so() {
        let v = view(true);
        let none = BTreeMap::new();
        let (a, b, c) = (
            v.select("h1", &none),
            v.select("h3", &none),
            v.select("h2", &none),
        );
        assert_eq!(a.version, b.version, "same releases, same set");
        assert_ne!(a.version, c.version);
        assert!(!a.sealed && c.sealed, "only seq 2 pins secrets");
        assert_eq!(a.body().releases["web"].payload, "one");
        assert_eq!(c.body().releases["web"].payload, "two");
        assert_eq!(v.desired_for("h2", &none).version, c.version);
        v.cache_body(&a.version, Bytes::from_static(b"{}"));
        assert_eq!(v.cached_body(&b.version).as_deref(), Some(&b"{}"[..]));
        assert!(
            view(false).cached_body(&a.version).is_none(),
            "a new view starts empty"
        );
    }
}
