//! The PostgreSQL store against a real, private PostgreSQL cluster: the behaviours the SQLite
//! store has (apps versioned, releases append-only with unique gapless seqs, signatures,
//! hosts and status, tokens, audit, rollouts compare-and-set), and what only a shared store
//! does: notifications between replicas and one lead at a time. (What is checked on both
//! backends alike is in `store_backends.rs`.)

mod support;

use slipway_controller::store::{self, ReleaseRecord, StoreError, TokenRecord};
use slipway_proto::api::{HostStatus, Phase, Role};
use slipway_proto::AppSpec;
use slipway_tests::postgres::Postgres;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use support::store::fresh;

fn spec(name: &str, image: &str) -> AppSpec {
    AppSpec::from_toml(&format!(
        "name = \"{name}\"\nimage = \"{image}\"\nlisten = 8080\ncontainer_port = 80\n"
    ))
    .unwrap()
}

fn release(app: &str, seq: u64, at: SystemTime) -> ReleaseRecord {
    ReleaseRecord {
        app: app.into(),
        seq,
        image: format!("reg/{app}@sha256:{}", "ab".repeat(32)),
        requested: format!("reg/{app}:v{seq}"),
        spec_version: 1,
        rollback_of: None,
        created_by: "admin".into(),
        created_at: at,
        envelope: format!("{{\"seq\":{seq}}}"),
        expires: at + Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn apps_are_versioned_only_when_they_change() {
    let pg = Postgres::start().unwrap();
    let (_, s) = fresh(&pg, "apps").await;
    let now = SystemTime::now();
    let (a, new) = s.apply_app(&spec("web", "reg/web"), now).await.unwrap();
    assert!(new);
    assert_eq!(a.version, 1);
    let (a, new) = s.apply_app(&spec("web", "reg/web"), now).await.unwrap();
    assert!(!new, "same spec: no new version");
    assert_eq!(a.version, 1);
    let (a, new) = s.apply_app(&spec("web", "reg/web2"), now).await.unwrap();
    assert!(new);
    assert_eq!(a.version, 2);
    s.apply_app(&spec("api", "reg/api"), now).await.unwrap();
    let apps = s.apps().await.unwrap();
    let names: Vec<(&str, u64)> = apps.iter().map(|a| (a.name.as_str(), a.version)).collect();
    assert_eq!(names, [("api", 1), ("web", 2)]);
    assert_eq!(s.app("web").await.unwrap().unwrap().spec.image, "reg/web2");
    assert!(s.app("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn releases_are_append_only_with_unique_gapless_seqs_and_newest_signature_wins() {
    let pg = Postgres::start().unwrap();
    let (url, s) = fresh(&pg, "releases").await;
    let now = SystemTime::now();
    s.apply_app(&spec("web", "reg/web"), now).await.unwrap();
    assert_eq!(s.latest_seq("web").await.unwrap(), 0);

    // Two replicas (two stores on one database) race for seqs: each seq is taken once.
    let other = store::open(&url).await.unwrap();
    let mut tasks = Vec::new();
    for (i, st) in [s.clone(), other.clone()]
        .into_iter()
        .cycle()
        .take(8)
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for _ in 0..5 {
                loop {
                    let seq = st.latest_seq("web").await.unwrap() + 1;
                    let mut r = release("web", seq, SystemTime::now());
                    r.created_by = format!("writer{i}");
                    match st.insert_release(&r).await {
                        Ok(()) => {
                            made.push(seq);
                            break;
                        }
                        Err(StoreError::SeqTaken { seq: s, .. }) => assert_eq!(s, seq),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            made
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>(), "unique and gapless");
    let rels = other.releases("web").await.unwrap();
    assert_eq!(rels.len(), 40);
    assert!(rels.windows(2).all(|w| w[0].seq + 1 == w[1].seq));

    let dup = s.insert_release(&release("web", 7, now)).await;
    assert!(
        matches!(dup, Err(StoreError::SeqTaken { seq: 7, .. })),
        "{dup:?}"
    );

    // A new signature replaces the envelope seen, never the release.
    let later = now + Duration::from_secs(10);
    s.add_signature(
        "web",
        40,
        "{\"resigned\":true}",
        later + Duration::from_secs(7200),
        later,
    )
    .await
    .unwrap();
    let r = s.release("web", 40).await.unwrap().unwrap();
    assert_eq!(r.envelope, "{\"resigned\":true}");
    let latest = other.latest_releases().await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (latest[0].seq, latest[0].envelope.as_str()),
        (40, "{\"resigned\":true}")
    );

    // Append-only in the database itself, whoever connects.
    let err = pg
        .psql(
            "releases",
            "UPDATE releases SET image = 'evil' WHERE seq = 1",
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("append-only"), "{err:#}");
    let err = pg
        .psql("releases", "DELETE FROM releases WHERE seq = 1")
        .unwrap_err();
    assert!(format!("{err:#}").contains("append-only"), "{err:#}");
    assert_eq!(s.latest_seq("web").await.unwrap(), 40);
}

#[tokio::test]
async fn hosts_statuses_tokens_and_the_audit_log() {
    let pg = Postgres::start().unwrap();
    let (url, s) = fresh(&pg, "misc").await;
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let labels: BTreeMap<String, String> = [("role".to_string(), "web".to_string())].into();
    let h = s
        .register_host("h1", &labels, Some("0.1.0"), t0)
        .await
        .unwrap();
    assert_eq!(h.labels, labels);
    assert_eq!(h.registered_at, t0);
    let t1 = t0 + Duration::from_secs(5);
    s.register_host("h1", &BTreeMap::new(), None, t1)
        .await
        .unwrap();
    let h = s.host("h1").await.unwrap().unwrap();
    assert!(h.labels.is_empty());
    assert_eq!(
        (h.registered_at, h.last_seen),
        (t0, t1),
        "registration time kept"
    );
    s.touch_host("h1", t1 + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        s.host("h1").await.unwrap().unwrap().last_seen,
        t1 + Duration::from_secs(1)
    );
    s.register_host("h2", &labels, None, t1).await.unwrap();
    let hosts: Vec<String> = s
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.host)
        .collect();
    assert_eq!(hosts, ["h1", "h2"]);

    let st = |app: &str, seq, phase| HostStatus {
        app: app.into(),
        seq,
        image: None,
        phase,
        expired_at: None,
    };
    s.put_status("h1", &st("web", 1, Phase::Pulling), t1)
        .await
        .unwrap();
    s.put_status("h1", &st("web", 1, Phase::Live), t1)
        .await
        .unwrap();
    let failed = Phase::Failed {
        reason: "health".into(),
    };
    s.put_status("h2", &st("web", 2, failed.clone()), t1)
        .await
        .unwrap();
    s.put_status("h2", &st("api", 1, Phase::Live), t1)
        .await
        .unwrap();
    let web = s.statuses(Some("web")).await.unwrap();
    let rows: Vec<(&str, u64, &Phase)> = web
        .iter()
        .map(|r| (r.host.as_str(), r.seq, &r.phase))
        .collect();
    assert_eq!(rows, [("h1", 1, &Phase::Live), ("h2", 2, &failed)]);
    assert_eq!(s.statuses(None).await.unwrap().len(), 3);
    // A host serving a release past its signature's expiry says so; a fresh one clears it.
    let stale = HostStatus {
        expired_at: Some("2030-01-02T03:04:05Z".into()),
        ..st("api", 1, Phase::Live)
    };
    s.put_status("h2", &stale, t1).await.unwrap();
    let api = s.statuses(Some("api")).await.unwrap();
    assert_eq!(
        api[0].expired_at,
        Some(humantime::parse_rfc3339("2030-01-02T03:04:05Z").unwrap())
    );
    s.put_status("h2", &st("api", 1, Phase::Live), t1)
        .await
        .unwrap();
    assert_eq!(s.statuses(Some("api")).await.unwrap()[0].expired_at, None);

    let tok = |name: &str, hash: &str| TokenRecord {
        name: name.into(),
        role: Role::Agent,
        host: Some("h1".into()),
        hash: hash.into(),
        created_at: t0,
    };
    s.create_token(&tok("agent-h1", &"1".repeat(64)))
        .await
        .unwrap();
    let dup = s.create_token(&tok("agent-h1", &"2".repeat(64))).await;
    assert!(
        matches!(dup, Err(StoreError::TokenExists(ref n)) if n == "agent-h1"),
        "{dup:?}"
    );
    let got = s.token_by_hash(&"1".repeat(64)).await.unwrap().unwrap();
    assert_eq!(
        (got.name.as_str(), got.role, got.host.as_deref()),
        ("agent-h1", Role::Agent, Some("h1"))
    );
    assert!(s.token_by_hash(&"3".repeat(64)).await.unwrap().is_none());
    assert_eq!(s.tokens().await.unwrap().len(), 1);
    assert!(s.revoke_token("agent-h1").await.unwrap());
    assert!(!s.revoke_token("agent-h1").await.unwrap());
    assert!(s.token_by_hash(&"1".repeat(64)).await.unwrap().is_none());

    for i in 0..5 {
        s.audit(
            "admin",
            "release.create",
            &format!("release/web/{i}"),
            "",
            t0,
        )
        .await
        .unwrap();
    }
    let log = s.audit_log(3).await.unwrap();
    let objects: Vec<&str> = log.iter().map(|a| a.object.as_str()).collect();
    assert_eq!(
        objects,
        ["release/web/4", "release/web/3", "release/web/2"],
        "newest first"
    );
    assert!(log[0].id > log[1].id);
    // Filters, as `GET /v1/audit?app=&actor=&since=` asks (the same SQL as SQLite's).
    s.audit("ci", "app.apply", "app/api", "", t0).await.unwrap();
    let find = |app: Option<&str>, actor: Option<&str>, since: Option<std::time::SystemTime>| {
        let filter = store::AuditFilter {
            app: app.map(Into::into),
            actor: actor.map(Into::into),
            since,
        };
        let s = &s;
        async move {
            s.audit_find(&filter, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.object)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find(Some("api"), None, None).await, ["app/api"]);
    assert_eq!(find(None, Some("admin"), None).await.len(), 5);
    assert_eq!(find(Some("web"), Some("ci"), None).await.len(), 0);
    let later = t0 + std::time::Duration::from_secs(1);
    assert_eq!(find(None, None, Some(later)).await.len(), 0);
    assert_eq!(find(None, None, Some(t0)).await.len(), 6);
    let err = pg.psql("misc", "DELETE FROM audit").unwrap_err();
    assert!(format!("{err:#}").contains("append-only"), "{err:#}");

    // Everything survives a reopen (a controller restart).
    drop(s);
    let s = store::open(&url).await.unwrap();
    assert_eq!(s.hosts().await.unwrap().len(), 2);
    assert_eq!(s.audit_log(100).await.unwrap().len(), 6);
}

#[tokio::test]
async fn rollouts_are_stored_once_and_updated_by_compare_and_set() {
    let pg = Postgres::start().unwrap();
    let (url, s) = fresh(&pg, "rollouts").await;
    let other = store::open(&url).await.unwrap();
    let now = SystemTime::now();
    assert!(s.insert_rollout("web", 1, "{\"v\":1}", now).await.unwrap());
    assert!(
        !other
            .insert_rollout("web", 1, "{\"v\":\"other\"}", now)
            .await
            .unwrap(),
        "planned once, whichever replica plans it"
    );
    let r = other.rollout("web", 1).await.unwrap().unwrap();
    assert_eq!((r.rev, r.doc.as_str()), (1, "{\"v\":1}"));
    assert!(s
        .update_rollout("web", 1, 1, "{\"v\":2}", now)
        .await
        .unwrap());
    assert!(
        !other
            .update_rollout("web", 1, 1, "{\"v\":\"stale\"}", now)
            .await
            .unwrap(),
        "a stale revision loses"
    );
    assert!(s.insert_rollout("web", 2, "{\"v\":10}", now).await.unwrap());
    let latest = other.latest_rollout("web").await.unwrap().unwrap();
    assert_eq!((latest.seq, latest.rev), (2, 1));
    let first = other.rollout("web", 1).await.unwrap().unwrap();
    assert_eq!((first.rev, first.doc.as_str()), (2, "{\"v\":2}"));
    assert!(s.latest_rollout("api").await.unwrap().is_none());
}

#[tokio::test]
async fn a_change_on_one_replica_ticks_the_others_but_not_itself() {
    let pg = Postgres::start().unwrap();
    let (url, a) = fresh(&pg, "notify").await;
    let b = store::open(&url).await.unwrap();
    let mut a_rx = a.changes().expect("postgres reports changes");
    let mut b_rx = b.changes().expect("postgres reports changes");
    a_rx.borrow_and_update();
    b_rx.borrow_and_update();
    a.notify_changed().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), b_rx.changed())
        .await
        .expect("b hears a")
        .unwrap();
    // a's own notification comes back to a's listener too; it is ignored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a_rx.has_changed().unwrap(), "a does not hear itself");
    b.notify_changed().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), a_rx.changed())
        .await
        .expect("a hears b")
        .unwrap();
}

#[tokio::test]
async fn one_replica_leads_and_another_takes_over_when_its_session_ends() {
    let pg = Postgres::start().unwrap();
    let (url, a) = fresh(&pg, "lead").await;
    let b = store::open(&url).await.unwrap();
    assert!(a.try_lead().await.unwrap());
    assert!(a.try_lead().await.unwrap(), "keeps the lead");
    assert!(!b.try_lead().await.unwrap(), "one leader at a time");
    // The leader's session ends (the database cut it, as when its process dies).
    pg.psql(
        "lead",
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()",
    )
    .unwrap();
    let mut took_over = false;
    for _ in 0..50 {
        if b.try_lead().await.unwrap() {
            took_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(took_over, "b takes over once a's session is gone");
    assert!(!a.try_lead().await.unwrap(), "a stays a follower now");
    // Dropping the leading store (its process exiting) frees the lead for a.
    drop(b);
    let mut back = false;
    for _ in 0..50 {
        if a.try_lead().await.unwrap() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "a leads again once b is gone");
}
