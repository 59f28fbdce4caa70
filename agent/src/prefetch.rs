//! Images pulled ahead. While a rollout runs, the controller tells each host of a later wave
//! which release that wave will bring it (`upcoming` in the desired set). The agent verifies
//! it like any release (signatures, trust, app, expiry, newer than what it accepted) but does
//! not accept or run it: it only pulls the image in the background, so when the host's wave
//! starts, the deploy finds the image in the store and goes straight to starting.

use crate::agent::Agent;
use slipway_proto::{Digest, Envelope, ImageRef};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The images pulled ahead (or being pulled), by app; kept from image GC until the app's
/// upcoming release changes or goes.
#[derive(Debug, Default)]
pub struct Prefetch {
    wanted: Mutex<BTreeMap<String, Digest>>,
}

impl Prefetch {
    /// The digests GC must keep.
    pub fn keep(&self) -> Vec<Digest> {
        self.wanted
            .lock()
            .expect("prefetch lock")
            .values()
            .cloned()
            .collect()
    }
}

/// Why an upcoming release is not pulled ahead (logged; nothing else changes).
#[derive(Debug, thiserror::Error)]
pub enum Skipped {
    #[error("upcoming release of {app}: {reason}")]
    Refused { app: String, reason: String },
}

/// Verifies `upcoming` (app -> envelope bytes) and starts pulling the image of each release
/// not already pulled ahead. Apps no longer upcoming are forgotten.
pub fn apply(agent: &Arc<Agent>, upcoming: &BTreeMap<String, Vec<u8>>) {
    let mut wanted = BTreeMap::new();
    for (app, bytes) in upcoming {
        match verify(agent, app, bytes) {
            Ok(image) => {
                wanted.insert(app.clone(), image);
            }
            Err(e) => tracing::warn!("{e}; not pulled ahead"),
        }
    }
    let mut held = agent.prefetch.wanted.lock().expect("prefetch lock");
    held.retain(|app, _| wanted.contains_key(app));
    for (app, image) in wanted {
        if held.get(&app) == Some(&image.digest) {
            continue;
        }
        held.insert(app.clone(), image.digest.clone());
        let agent = agent.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            match agent.parts.image(&image).await {
                Ok(p) => tracing::info!(
                    app,
                    image = %image,
                    ms = t.elapsed().as_millis() as u64,
                    bytes = p.report.bytes_fetched,
                    "image pulled ahead of the host's wave"
                ),
                Err(e) => {
                    // The deploy pulls it again when the wave starts, and reports then.
                    tracing::warn!(app, image = %image, error = %e, "pulling ahead failed");
                    let mut held = agent.prefetch.wanted.lock().expect("prefetch lock");
                    if held.get(&app) == Some(&image.digest) {
                        held.remove(&app);
                    }
                }
            }
        });
    }
}

/// The image of a verified upcoming release newer than what `app` accepted.
fn verify(agent: &Agent, app: &str, bytes: &[u8]) -> Result<ImageRef, Skipped> {
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
    rel.image_ref().map_err(|e| refused(e.to_string()))
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
        let pulled: Vec<String> = fake.world().pulled.iter().map(|i| i.to_string()).collect();
        assert_eq!(pulled, [format!("127.0.0.1:5000/web@{V2}")]);
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
    }
}
