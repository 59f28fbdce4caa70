//! Releases made ready ahead of their wave. While a rollout runs, the controller tells each
//! host of a later wave which release that wave will bring it (`upcoming` in the desired set).
//! The agent verifies it like any release (signatures, trust, app, expiry, newer than what it
//! accepted) but does not accept it. In the background it pulls the image and, for a release
//! without secrets or volumes, creates its container (`runc create`: rootfs, namespace,
//! address) without starting it, so no code of the image runs before the wave. When the wave
//! starts, the deploy finds the image in the store and the container made: it only starts
//! it. A release no longer upcoming and not accepted has its container discarded.

use crate::agent::Agent;
use slipway_proto::{ContainerId, Digest, Envelope, Release};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The releases made ready ahead (or being made ready), by app; their images are kept from
/// GC until the app's upcoming release changes or goes.
#[derive(Debug, Default)]
pub struct Prefetch {
    wanted: Mutex<BTreeMap<String, Ahead>>,
    /// Per app: held while a container is made ahead, and by the deploy while it decides
    /// how to start its container, so the two never make the same container.
    making: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ahead {
    seq: u64,
    digest: Digest,
    container: ContainerId,
    /// Its container is made ahead too (see [`can_create`]).
    create: bool,
}

impl Prefetch {
    /// The digests GC must keep.
    pub fn keep(&self) -> Vec<Digest> {
        self.wanted
            .lock()
            .expect("prefetch lock")
            .values()
            .map(|a| a.digest.clone())
            .collect()
    }

    /// The lock a deploy of `app` holds while it looks for and starts its container.
    pub fn making(&self, app: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.making
            .lock()
            .expect("prefetch lock")
            .entry(app.to_string())
            .or_default()
            .clone()
    }
}

/// A release whose container may be made ahead: one without secrets (they are opened only
/// for the deploy) and without volumes (the live container still holds them).
pub fn can_create(rel: &Release) -> bool {
    let s = &rel.spec;
    s.secrets.is_empty() && s.secret_files.is_empty() && s.volumes.is_empty()
}

/// Why an upcoming release is not made ready (logged; nothing else changes).
#[derive(Debug, thiserror::Error)]
pub enum Skipped {
    #[error("upcoming release of {app}: {reason}")]
    Refused { app: String, reason: String },
}

/// Verifies `upcoming` (app -> envelope bytes) and starts making ready each release not
/// already being made ready. Apps no longer upcoming are forgotten, and the containers made
/// for releases they did not accept are discarded.
pub fn apply(agent: &Arc<Agent>, upcoming: &BTreeMap<String, Vec<u8>>) {
    let mut wanted = BTreeMap::new();
    for (app, bytes) in upcoming {
        match verify(agent, app, bytes) {
            Ok(rel) => {
                wanted.insert(app.clone(), rel);
            }
            Err(e) => tracing::warn!("{e}; not made ready ahead"),
        }
    }
    let mut held = agent.prefetch.wanted.lock().expect("prefetch lock");
    let mut dropped = Vec::new();
    held.retain(|app, a| {
        let keep = wanted.get(app).is_some_and(|r| r.seq == a.seq);
        if !keep {
            dropped.push((app.clone(), a.clone()));
        }
        keep
    });
    for (app, rel) in wanted {
        if held.contains_key(&app) {
            continue;
        }
        let (Ok(image), Ok(container)) = (rel.image_ref(), rel.container_id()) else {
            continue; // verify checked both
        };
        let ahead = Ahead {
            seq: rel.seq,
            digest: image.digest.clone(),
            container,
            create: can_create(&rel),
        };
        held.insert(app.clone(), ahead.clone());
        tokio::spawn(make_ready(agent.clone(), app, rel, ahead));
    }
    drop(held);
    for (app, a) in dropped {
        if a.create {
            tokio::spawn(drop_unaccepted(agent.clone(), app, a));
        }
    }
}

/// Pulls the image, then (when allowed) creates the container, unless the release stopped
/// being upcoming meanwhile.
async fn make_ready(agent: Arc<Agent>, app: String, rel: Release, ahead: Ahead) {
    let image = match rel.image_ref() {
        Ok(i) => i,
        Err(_) => return,
    };
    let t = Instant::now();
    let pulled = match agent.parts.image(&image).await {
        Ok(p) => {
            tracing::info!(app, image = %image, ms = t.elapsed().as_millis() as u64,
                bytes = p.report.bytes_fetched, "image pulled ahead of the host's wave");
            p
        }
        Err(e) => {
            // The deploy pulls it again when the wave starts, and reports then.
            tracing::warn!(app, image = %image, error = %e, "pulling ahead failed");
            let mut held = agent.prefetch.wanted.lock().expect("prefetch lock");
            if held.get(&app) == Some(&ahead) {
                held.remove(&app);
            }
            return;
        }
    };
    if !ahead.create {
        return;
    }
    let lock = agent.prefetch.making(&app);
    let _making = lock.lock().await;
    let still = agent
        .prefetch
        .wanted
        .lock()
        .expect("prefetch lock")
        .get(&app)
        == Some(&ahead);
    if !still || agent.app_state(&app).accepted_seq >= ahead.seq {
        return; // gone, or its deploy has begun and makes the container itself
    }
    let t = Instant::now();
    let secrets = slipway_runtime::ContainerSecrets::default();
    match agent
        .parts
        .create(&ahead.container, &rel, &pulled, &secrets)
        .await
    {
        Ok(_) => tracing::info!(app, seq = rel.seq, container = %ahead.container,
            ms = t.elapsed().as_millis() as u64,
            "container made ahead of the host's wave (created, not started)"),
        // The deploy makes it when the wave starts, and reports then.
        Err(e) => tracing::warn!(app, container = %ahead.container, error = %e,
            "making the container ahead failed"),
    }
}

/// Discards the container made ahead for a release that is no longer upcoming, unless the
/// app accepted it (then its deploy starts it).
async fn drop_unaccepted(agent: Arc<Agent>, app: String, a: Ahead) {
    let lock = agent.prefetch.making(&app);
    let _making = lock.lock().await;
    if agent.app_state(&app).accepted_seq >= a.seq {
        return;
    }
    if let Ok(Some(_)) = agent.parts.container(&a.container).await {
        tracing::info!(app, seq = a.seq, container = %a.container,
            "release no longer upcoming; discarding the container made ahead");
        crate::swap::discard(&agent, &a.container, std::time::Duration::ZERO).await;
    }
}

/// A verified upcoming release of `app`, newer than what it accepted.
fn verify(agent: &Agent, app: &str, bytes: &[u8]) -> Result<Release, Skipped> {
    let refused = |reason: String| Skipped::Refused {
        app: app.to_string(),
        reason,
    };
    let verified = Envelope::from_json(bytes)
        .and_then(|env| env.verify_release(&agent.trust, SystemTime::now()))
        .map_err(|e| refused(e.to_string()))?;
    let rel = verified.release;
    if rel.app != app {
        return Err(refused(format!("the release is of app `{}`", rel.app)));
    }
    let accepted = agent.app_state(app).accepted_seq;
    if rel.seq <= accepted {
        return Err(refused(format!(
            "seq {} is not newer than the accepted seq {accepted}",
            rel.seq
        )));
    }
    rel.image_ref().map_err(|e| refused(e.to_string()))?;
    rel.container_id().map_err(|e| refused(e.to_string()))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_proto::{Release, SigningKey};
    use std::time::Duration;

    const V2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn release(app: &str, seq: u64) -> Release {
        crate::parts::fake::release(app, seq, V2, "")
    }

    #[tokio::test]
    async fn a_verified_upcoming_release_has_its_image_pulled_and_nothing_else_is_pulled() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let (agent, fake) = crate::parts::fake::agent(dir.path(), &key);
        let agent = Arc::new(agent);
        agent.update("old", |s| s.accepted_seq = 5);
        let bytes = |rel: &Release, k: &SigningKey| {
            serde_json::to_vec(&Envelope::sign_release(rel, &[k])).unwrap()
        };
        let upcoming: BTreeMap<String, Vec<u8>> = [
            ("web".to_string(), bytes(&release("web", 2), &key)),
            // Signed by a key the trust file does not hold.
            ("forged".to_string(), bytes(&release("forged", 2), &other)),
            // Filed under another app's name.
            ("misfiled".to_string(), bytes(&release("web", 3), &key)),
            // Not newer than what the app accepted.
            ("old".to_string(), bytes(&release("old", 5), &key)),
        ]
        .into();
        apply(&agent, &upcoming);
        apply(&agent, &upcoming);
        for _ in 0..100 {
            if !fake.world().pulled.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let web = release("web", 2).container_id().unwrap();
        for _ in 0..100 {
            if !fake.world().created.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pulled: Vec<String> = fake.world().pulled.iter().map(|i| i.to_string()).collect();
        assert_eq!(pulled, [format!("127.0.0.1:5000/web@{V2}")]);
        // Its container is made, not started; nothing else is made.
        assert_eq!(fake.world().created, std::slice::from_ref(&web));
        assert_eq!(
            fake.world().containers[&web].status,
            slipway_runtime::ContainerStatus::Created
        );
        assert_eq!(agent.prefetch.keep().len(), 1, "kept from GC");
        assert_eq!(
            agent.app_state("web").accepted_seq,
            0,
            "pulled, not accepted"
        );
        apply(&agent, &BTreeMap::new());
        assert!(
            agent.prefetch.keep().is_empty(),
            "forgotten once not upcoming"
        );
        // Not accepted: the container made ahead is discarded.
        for _ in 0..100 {
            if !fake.world().discarded.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.world().discarded, [web]);
        assert!(fake.world().containers.is_empty());
    }

    #[tokio::test]
    async fn a_release_with_secrets_or_volumes_is_pulled_ahead_but_its_container_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let (agent, fake) = crate::parts::fake::agent(dir.path(), &key);
        let agent = Arc::new(agent);
        let rel = crate::parts::fake::release(
            "db",
            2,
            V2,
            "[[volumes]]\nname = \"data\"\ncontainer = \"/data\"\n",
        );
        assert!(!can_create(&rel));
        let upcoming: BTreeMap<String, Vec<u8>> = [(
            "db".to_string(),
            serde_json::to_vec(&Envelope::sign_release(&rel, &[&key])).unwrap(),
        )]
        .into();
        apply(&agent, &upcoming);
        for _ in 0..100 {
            if !fake.world().pulled.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fake.world().pulled.len(), 1);
        assert!(fake.world().created.is_empty());
        assert!(fake.world().containers.is_empty());
    }
}
