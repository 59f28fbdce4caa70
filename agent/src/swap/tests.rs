//! The swap against the fake parts, on a paused clock: supersede, revert during bake, a
//! container that fails or crashes in start, and a rollback to an older image.

use super::{deploy, Cmd};
use crate::agent::Agent;
use crate::parts::fake::FakeParts;
use crate::state::DeployPhase;
use slipway_proto::{ContainerId, Release, SigningKey};
use std::time::Duration;
use tokio::sync::mpsc;

const V1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const V2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Bed {
    agent: Agent,
    fake: FakeParts,
    _dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let (agent, fake) = crate::parts::fake::agent(dir.path(), &key);
        Bed {
            agent,
            fake,
            _dir: dir,
        }
    }

    fn fake(&self) -> std::sync::MutexGuard<'_, crate::parts::fake::World> {
        self.fake.world()
    }

    /// Accepts `rel` as the reconciler would, then deploys it.
    async fn deploy(&self, rel: &Release, rx: &mut mpsc::Receiver<Cmd>) -> Option<Cmd> {
        self.agent.update(&rel.app, |s| {
            s.accepted_seq = rel.seq;
            s.releases.insert(rel.seq, rel.clone());
        });
        deploy(&self.agent, rel.clone(), Default::default(), rx).await
    }

    fn routed(&self) -> Option<ContainerId> {
        self.fake().routes.get("web").map(|u| u.id.clone())
    }
}

fn release(seq: u64, digest: &str) -> Release {
    crate::parts::fake::release(
        "web",
        seq,
        digest,
        "[swap]\nbake = \"5s\"\n[health]\ndeadline = \"10s\"\n",
    )
}

fn id(rel: &Release) -> ContainerId {
    rel.container_id().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_release_goes_live_and_the_next_replaces_it() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let (r1, r2) = (release(1, V1), release(2, V2));
    assert!(bed.deploy(&r1, &mut rx).await.is_none());
    assert_eq!(bed.routed(), Some(id(&r1)));
    assert!(bed.deploy(&r2, &mut rx).await.is_none());
    assert_eq!(bed.routed(), Some(id(&r2)));
    assert_eq!(bed.fake().discarded, vec![id(&r1)]);
    let st = bed.agent.app_state("web");
    assert_eq!(st.live_seq, Some(2));
    assert_eq!(st.live_container, Some(id(&r2)));
    assert_eq!(st.phase, Some(DeployPhase::Live));
    assert!(st.history[0].swap_ms.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_newer_release_supersedes_one_still_health_checking() {
    let bed = Bed::new();
    let (tx, mut rx) = mpsc::channel(4);
    let (r1, r2, r3) = (release(1, V1), release(2, V2), release(3, V1));
    bed.deploy(&r1, &mut rx).await;
    bed.fake().healthy_probes.insert(id(&r2), 0);
    tx.send(Cmd::Deploy(Box::new(r3.clone()), Default::default()))
        .await
        .unwrap();
    let next = bed.deploy(&r2, &mut rx).await;
    assert!(matches!(next, Some(Cmd::Deploy(r, _)) if r.seq == 3));
    // The superseded container never took traffic and is gone; v1 still serves.
    assert_eq!(bed.routed(), Some(id(&r1)));
    assert!(!bed.fake().containers.contains_key(&id(&r2)));
    let st = bed.agent.app_state("web");
    assert_eq!(st.history[0].outcome, DeployPhase::Superseded);
    assert_eq!(st.failed_seq, None, "a superseded release is not a failure");
    assert_eq!(st.live_seq, Some(1));
}

#[tokio::test(start_paused = true)]
async fn failing_during_bake_switches_back_to_the_old_container() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let (r1, r2) = (release(1, V1), release(2, V2));
    bed.deploy(&r1, &mut rx).await;
    // Healthy for the health phase, failing once in bake.
    bed.fake().healthy_probes.insert(id(&r2), 1);
    let started = tokio::time::Instant::now();
    assert!(bed.deploy(&r2, &mut rx).await.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reverted before the bake ended"
    );
    assert_eq!(bed.routed(), Some(id(&r1)));
    assert!(bed.fake().discarded.contains(&id(&r2)));
    assert!(bed.fake().containers.contains_key(&id(&r1)));
    let st = bed.agent.app_state("web");
    assert_eq!(st.live_seq, Some(1));
    assert_eq!(st.live_container, Some(id(&r1)));
    assert_eq!(st.failed_seq, Some(2));
    assert_eq!(st.history[0].outcome, DeployPhase::RolledBack);
    let why = st.last_error.unwrap();
    assert!(
        why.contains(&format!("rolled back to {}", id(&r1))),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_during_bake_with_nothing_to_revert_to_stays_live_flagged() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let r1 = release(1, V1);
    bed.fake().healthy_probes.insert(id(&r1), 1);
    bed.deploy(&r1, &mut rx).await;
    assert_eq!(bed.routed(), Some(id(&r1)));
    let st = bed.agent.app_state("web");
    assert_eq!(st.live_seq, Some(1));
    assert_eq!(st.failed_seq, None);
    assert!(st.last_error.unwrap().contains("no previous container"));
}

#[tokio::test(start_paused = true)]
async fn a_container_that_fails_or_crashes_in_start_is_discarded_and_the_old_keeps_serving() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let (r1, r2, r3) = (release(1, V1), release(2, V2), release(3, V2));
    bed.deploy(&r1, &mut rx).await;

    bed.fake().fail_start.insert(id(&r2));
    assert!(bed.deploy(&r2, &mut rx).await.is_none());
    let st = bed.agent.app_state("web");
    assert_eq!(st.failed_seq, Some(2));
    let why = st.last_error.unwrap();
    assert!(
        why.contains(&format!("container {} did not start", id(&r2))),
        "{why}"
    );
    assert_eq!(st.history[0].outcome, DeployPhase::Failed);

    // Its process exits at once: unhealthy with the exit code, well before the deadline.
    bed.fake().crash_on_start.insert(id(&r3));
    let started = tokio::time::Instant::now();
    bed.deploy(&r3, &mut rx).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let st = bed.agent.app_state("web");
    assert_eq!(st.failed_seq, Some(3));
    let why = st.last_error.unwrap();
    assert!(
        why.contains("unhealthy") && why.contains("exit code 1"),
        "{why}"
    );
    assert!(bed.fake().discarded.contains(&id(&r3)));

    assert_eq!(bed.routed(), Some(id(&r1)));
    assert_eq!(st.live_seq, Some(1));
    // A failed release is not retried.
    bed.deploy(&r3, &mut rx).await;
    assert!(!bed.fake().containers.contains_key(&id(&r3)));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_is_a_new_release_of_the_older_image_from_the_store() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let (r1, r2, r3) = (release(1, V1), release(2, V2), release(3, V1));
    bed.deploy(&r1, &mut rx).await;
    bed.deploy(&r2, &mut rx).await;
    bed.deploy(&r3, &mut rx).await;
    assert_eq!(bed.routed(), Some(id(&r3)));
    assert_ne!(
        id(&r3),
        id(&r1),
        "a new container, never the old one restarted"
    );
    assert_eq!(
        bed.fake().pulled.len(),
        2,
        "the older image came from the store"
    );
    let st = bed.agent.app_state("web");
    assert_eq!(st.live_seq, Some(3));
    assert_eq!(
        bed.fake().containers.keys().cloned().collect::<Vec<_>>(),
        vec![id(&r3)]
    );
}

/// `release(seq, digest)` using secret `db` (v`version`, pinned to `value`) as env `DB` and
/// as the file `/run/secrets/db`.
fn release_with_secret(seq: u64, digest: &str, version: u64, value: &[u8]) -> Release {
    let mut rel = release(seq, digest);
    rel.spec.secrets.insert("DB".into(), "db".into());
    rel.spec.secret_files.push(slipway_proto::SecretFile {
        name: "db".into(),
        path: "/run/secrets/db".into(),
        mode: 0o400,
    });
    rel.spec.secret_versions.insert(
        "db".into(),
        slipway_proto::SecretPin {
            version,
            digest: slipway_proto::seal::secret_digest(value),
        },
    );
    rel
}

fn sealed_for(
    key: &slipway_proto::seal::HostSecretKey,
    version: u64,
    value: &[u8],
) -> crate::secrets::Sealed {
    let ctx = slipway_proto::seal::SealContext {
        app: "web",
        name: "db",
        version,
        host: "h1",
    };
    let sealed = slipway_proto::seal::seal(&key.public(), &ctx, value).unwrap();
    [(
        "db".to_string(),
        slipway_proto::api::HostSecret { version, sealed },
    )]
    .into()
}

#[tokio::test(start_paused = true)]
async fn secrets_are_opened_into_the_new_container_and_a_bad_one_keeps_the_old_serving() {
    let mut bed = Bed::new();
    let key = slipway_proto::seal::HostSecretKey::generate().unwrap();
    let (_tx, mut rx) = mpsc::channel(4);
    let r1 = release_with_secret(1, V1, 1, b"one");
    bed.agent.secret_key = Some(("h1".into(), key));
    let key = &bed.agent.secret_key.as_ref().unwrap().1;
    let good = sealed_for(key, 1, b"one");
    let bad = sealed_for(key, 2, b"not the pinned value");
    bed.agent.update("web", |s| {
        s.accepted_seq = 1;
        s.releases.insert(1, r1.clone());
    });
    assert!(deploy(&bed.agent, r1.clone(), good, &mut rx)
        .await
        .is_none());
    assert_eq!(bed.routed(), Some(id(&r1)));
    assert_eq!(
        bed.fake().secrets[&id(&r1)],
        vec!["DB=one".to_string(), "/run/secrets/db=one".to_string()]
    );

    let r2 = release_with_secret(2, V2, 2, b"two");
    bed.agent.update("web", |s| {
        s.accepted_seq = 2;
        s.releases.insert(2, r2.clone());
    });
    assert!(deploy(&bed.agent, r2.clone(), bad, &mut rx).await.is_none());
    let st = bed.agent.app_state("web");
    assert_eq!((st.live_seq, st.failed_seq), (Some(1), Some(2)));
    let why = st.last_error.unwrap();
    assert!(
        why.contains("release web seq 2: secret `db` v2 does not match the digest"),
        "{why}"
    );
    assert!(!bed.fake().containers.contains_key(&id(&r2)));
    assert_eq!(bed.routed(), Some(id(&r1)));
    assert!(!why.contains("not the pinned value"), "{why}");

    // Without a controller (a release dir), nothing can be delivered: refused by name.
    let mut plain = Bed::new();
    plain.agent.secret_key = None;
    let r3 = release_with_secret(3, V1, 1, b"one");
    plain.agent.update("web", |s| s.accepted_seq = 3);
    deploy(&plain.agent, r3, Default::default(), &mut rx).await;
    let why = plain.agent.app_state("web").last_error.unwrap();
    assert!(
        why.contains("release web seq 3 uses secrets") && why.contains("only the controller"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_made_ahead_of_the_wave_is_started_not_made_again() {
    let bed = Bed::new();
    let (_tx, mut rx) = mpsc::channel(4);
    let (r1, r2) = (release(1, V1), release(2, V2));
    assert!(bed.deploy(&r1, &mut rx).await.is_none());
    // What pulling ahead leaves: the image stored and the container created.
    let image = bed
        .agent
        .parts
        .image(&r2.image_ref().unwrap())
        .await
        .unwrap();
    let secrets = Default::default();
    bed.agent
        .parts
        .create(&id(&r2), &r2, &image, &secrets)
        .await
        .unwrap();
    let before = bed.fake().next_ip;
    assert!(bed.deploy(&r2, &mut rx).await.is_none());
    assert_eq!(bed.routed(), Some(id(&r2)));
    assert_eq!(bed.fake().next_ip, before, "no second container made");
    assert_eq!(
        bed.fake().containers[&id(&r2)].status,
        slipway_runtime::ContainerStatus::Running
    );
    assert_eq!(bed.fake().discarded, vec![id(&r1)]);
    assert_eq!(bed.agent.app_state("web").live_seq, Some(2));
}
