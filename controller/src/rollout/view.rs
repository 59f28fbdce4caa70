//! Which release each host is told to run, per app: hosts in the started waves get the new
//! release, the others keep what they had, hosts outside the plan (registered since) get the
//! last release that went out completely. Rebuilt from the store whenever a release is
//! published, a rollout moves, or another replica says something changed.

use super::isolate::Stage;
use super::RolloutError;
use crate::api::AppState;
use crate::publish::{release_body, Snapshot};
use crate::store::ReleaseRecord;
use axum::body::Bytes;
use slipway_proto::api::{DesiredSetBody, HostLifecycle, RolloutState};
use slipway_proto::Envelope;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
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
    /// While the newest release's rollout runs: its seq, and the hosts of waves not started
    /// yet, which are told it ahead so their agents pull its image.
    pub upcoming: Option<(u64, HashSet<String>)>,
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
    upcoming: Vec<(&'a str, &'a Envelope)>,
    pub sealed: bool,
}

impl View {
    /// The releases aimed at `host` (with `labels`) now, and the version token of that set.
    pub fn select<'a>(&'a self, host: &str, labels: &BTreeMap<String, String>) -> Selected<'a> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut releases = Vec::new();
        let mut upcoming = Vec::new();
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
            if let Some(((env, fp), seq)) = seq.and_then(|s| v.envelopes.get(&s).zip(Some(s))) {
                ctx.update(app.as_bytes());
                ctx.update(b"\0");
                ctx.update(fp.as_bytes());
                ctx.update(b"\n");
                sealed |= v.sealed.contains(&seq);
                releases.push((app.as_str(), env));
            }
            // Also to a host that runs nothing of the app yet (its first release).
            if let Some((up, hosts)) = &v.upcoming {
                if let Some((env, fp)) = v.envelopes.get(up).filter(|_| hosts.contains(host)) {
                    ctx.update(b"upcoming\0");
                    ctx.update(app.as_bytes());
                    ctx.update(b"\0");
                    ctx.update(fp.as_bytes());
                    ctx.update(b"\n");
                    upcoming.push((app.as_str(), env));
                }
            }
        }
        Selected {
            version: hex::encode(&ctx.finish().as_ref()[..12]),
            releases,
            upcoming,
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
        let t = std::time::Instant::now();
        let doc = super::ensure::ensure(state, rec, &rel).await?;
        tracing::debug!(app = %rec.app, seq = rec.seq, elapsed_ms = t.elapsed().as_secs_f64() * 1e3, "rollout read");
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
        // Hosts of waves not started yet hear of the release ahead (active hosts only: a
        // cordoned one gets nothing new), so each wave finds its image pulled; from when the
        // first wave has switched to it (`ahead`), so as not to slow that wave down.
        if doc.ahead
            && matches!(
                doc.state,
                RolloutState::Running | RolloutState::Paused | RolloutState::AwaitingPromotion
            )
        {
            let ahead: HashSet<String> = doc
                .waves
                .iter()
                .flatten()
                .filter(|h| !held.contains_key(h.as_str()))
                .filter(|h| v.per_host.get(h.as_str()) != Some(&Some(rec.seq)))
                .cloned()
                .collect();
            if !ahead.is_empty() {
                v.upcoming = Some((rec.seq, ahead));
            }
        }
        let mut seqs: Vec<u64> = v.per_host.values().flatten().copied().collect();
        seqs.extend(v.default);
        seqs.extend(v.upcoming.as_ref().map(|(s, _)| *s));
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
            upcoming: self
                .upcoming
                .iter()
                .map(|(app, env)| (app.to_string(), (*env).clone()))
                .collect(),
            ..Default::default()
        }
    }
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

/// Rebuilds the view on every change until `shutdown`.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut published = state.publisher.subscribe();
    let mut remote = state.store.changes();
    // The snapshot last published because another replica said so (not to be echoed back).
    let mut from_remote: Option<Arc<Snapshot>> = None;
    loop {
        let t = std::time::Instant::now();
        match View::build(&state).await {
            Ok(v) => {
                state.rollouts.view.send_replace(Arc::new(v));
                tracing::debug!(
                    elapsed_ms = t.elapsed().as_secs_f64() * 1e3,
                    "rollout view rebuilt"
                );
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

    #[test]
    fn hosts_of_waves_not_started_are_told_the_release_ahead() {
        let mut v = view(false);
        let web = v.apps.get_mut("web").unwrap();
        web.upcoming = Some((2, ["h3".to_string(), "new".to_string()].into()));
        web.default = None;
        web.per_host.insert("h1".into(), Some(1));
        web.per_host.insert("h3".into(), Some(1));
        let none = BTreeMap::new();
        let (h1, h2, h3) = (
            v.select("h1", &none).body(),
            v.select("h2", &none).body(),
            v.select("h3", &none).body(),
        );
        assert!(h1.upcoming.is_empty() && h2.upcoming.is_empty());
        assert_eq!(h3.releases["web"].payload, "one", "h3 still runs seq 1");
        assert_eq!(h3.upcoming["web"].payload, "two");
        assert_ne!(
            h1.version, h3.version,
            "being told ahead is a change to wait for"
        );
    }
}
