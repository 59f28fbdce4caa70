//! Store behaviours checked alike on SQLite and a real, private PostgreSQL cluster: the event
//! log, and host lifecycle with join tokens.

mod support;

use slipway_controller::store::{self, Store, TokenRecord};
use slipway_proto::api::Role;
use slipway_tests::postgres::Postgres;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use support::store::fresh;

#[tokio::test]
async fn events_get_increasing_ids_filter_by_since_and_app_and_are_pruned() {
    let pg = Postgres::start().unwrap();
    let (_, s) = fresh(&pg, "events").await;
    check_event_log(s.as_ref()).await;
}

#[tokio::test]
async fn events_behave_the_same_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let s = store::open(&url).await.unwrap();
    check_event_log(s.as_ref()).await;
}

/// The event log on either backend: ids increase, `since` and `app` filter, retention prunes.
async fn check_event_log(s: &dyn Store) {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let t1 = t0 + Duration::from_secs(5);

    let e1 = s
        .add_event("host.joined", None, &serde_json::json!({"host": "h1"}), t0)
        .await
        .unwrap();
    let e2 = s
        .add_event(
            "release.created",
            Some("web"),
            &serde_json::json!({"seq": 1}),
            t1,
        )
        .await
        .unwrap();
    assert!(e2.id > e1.id);
    let all = s.events_since(0, None, 10).await.unwrap();
    assert_eq!(all, vec![e1.clone(), e2.clone()]);
    assert_eq!(
        s.events_since(e1.id, None, 10).await.unwrap(),
        vec![e2.clone()]
    );
    assert_eq!(
        s.events_since(0, Some("web"), 10).await.unwrap(),
        vec![e2.clone()]
    );
    assert_eq!(s.events_since(0, None, 1).await.unwrap(), vec![e1.clone()]);
    assert_eq!(s.prune_events(t1, 100).await.unwrap(), 1, "older than t1");
    let e3 = s
        .add_event("host.phase", Some("web"), &serde_json::json!({}), t1)
        .await
        .unwrap();
    assert_eq!(
        s.prune_events(t0, 1).await.unwrap(),
        1,
        "all but the newest"
    );
    assert_eq!(s.events_since(0, None, 10).await.unwrap(), vec![e3]);
}

#[tokio::test]
async fn host_lifecycle_and_join_tokens_on_postgres() {
    let pg = Postgres::start().unwrap();
    let (_, s) = fresh(&pg, "lifecycle").await;
    check_lifecycle_and_join(s.as_ref()).await;
}

#[tokio::test]
async fn host_lifecycle_and_join_tokens_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lifecycle.db").display());
    let s = store::open(&url).await.unwrap();
    check_lifecycle_and_join(s.as_ref()).await;
}

/// Cordon/drain, down marks, managed labels, removal with its tokens and key, and join tokens
/// used once per host up to their uses, on either backend.
async fn check_lifecycle_and_join(s: &dyn Store) {
    use slipway_controller::store::JoinTokenRecord;
    use slipway_proto::api::HostLifecycle;
    let now = SystemTime::now();
    let labels = BTreeMap::from([("role".to_string(), "web".to_string())]);
    s.register_host("h1", &labels, None, now).await.unwrap();
    assert!(s
        .set_host_lifecycle("h1", HostLifecycle::Cordoned)
        .await
        .unwrap());
    assert!(!s
        .set_host_lifecycle("nope", HostLifecycle::Drained)
        .await
        .unwrap());
    assert_eq!(
        s.held_hosts().await.unwrap(),
        vec![("h1".to_string(), HostLifecycle::Cordoned)]
    );
    assert!(s.mark_host_down("h1", now).await.unwrap());
    assert!(!s.mark_host_down("h1", now).await.unwrap(), "once");
    s.touch_host("h1", now + Duration::from_secs(1))
        .await
        .unwrap();
    let h = s.host("h1").await.unwrap().unwrap();
    assert_eq!((h.lifecycle, h.down_at), (HostLifecycle::Cordoned, None));
    // Managed labels survive the agent registering with others.
    let db = BTreeMap::from([("role".to_string(), "db".to_string())]);
    assert!(s.set_host_labels("h1", &db).await.unwrap());
    s.register_host("h1", &labels, None, now).await.unwrap();
    assert_eq!(s.host("h1").await.unwrap().unwrap().labels, db);

    let join = JoinTokenRecord {
        name: "join-a".into(),
        hash: "11".repeat(32),
        labels: labels.clone(),
        uses: 1,
        used: 0,
        expires_at: now + Duration::from_secs(60),
        created_by: "admin".into(),
        created_at: now,
    };
    s.create_join_token(&join).await.unwrap();
    let agent = |host: &str, hash: &str| TokenRecord {
        name: format!("agent-{host}"),
        role: Role::Agent,
        host: Some(host.into()),
        hash: hash.into(),
        created_at: now,
    };
    assert!(s
        .join_host(
            "join-a",
            "j1",
            &labels,
            Some("0.1.0"),
            &agent("j1", &"22".repeat(32)),
            now
        )
        .await
        .unwrap());
    assert!(
        !s.join_host(
            "join-a",
            "j2",
            &labels,
            None,
            &agent("j2", &"33".repeat(32)),
            now
        )
        .await
        .unwrap(),
        "used up"
    );
    assert!(
        s.host("j2").await.unwrap().is_none(),
        "nothing of j2 stored"
    );
    let j1 = s.host("j1").await.unwrap().unwrap();
    assert!(j1.labels_managed);
    assert_eq!(
        s.join_token_by_hash(&"11".repeat(32))
            .await
            .unwrap()
            .unwrap()
            .used,
        1
    );
    assert_eq!(
        s.token_by_hash(&"22".repeat(32))
            .await
            .unwrap()
            .unwrap()
            .host
            .as_deref(),
        Some("j1")
    );
    // Removal takes the host's tokens, status and secret key with it.
    s.set_host_secret_key("j1", "AAAA", now).await.unwrap();
    assert_eq!(
        s.remove_host("j1").await.unwrap(),
        Some(vec!["agent-j1".to_string()])
    );
    assert!(s.host("j1").await.unwrap().is_none());
    assert!(s.token_by_hash(&"22".repeat(32)).await.unwrap().is_none());
    assert!(s.host_secret_key("j1").await.unwrap().is_none());
    assert_eq!(s.remove_host("j1").await.unwrap(), None);
    assert!(s.revoke_join_token("join-a").await.unwrap());
    assert!(s.join_tokens().await.unwrap().is_empty());
}
