//! Upgrades one side at a time: every API body read by the controller (from agents and the
//! CLI) and by agents and the CLI (from the controller) still parses, to the same value, when
//! the other side is newer and sends fields this build does not know, at every level.
//! The signed release (its DSSE envelope, and the app spec inside) is the exception: it does
//! not change between versions and stays strict.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use slipway_proto::api::logs::{LogFrame, LogRequests};
use slipway_proto::api::*;
use std::fmt::Debug;

/// Fields that are maps of the user's keys (or an enum's one-key tag), not structs: their
/// values are structs (or strings), their keys are data.
const MAPS: &[&str] = &["labels", "annotations", "phase"];
/// What a signature covers, with its DSSE envelope: it does not change between versions.
const SIGNED: &[&str] = &["spec", "envelope", "releases"];

/// Adds unknown fields to every struct in `v`, except in what is signed.
fn with_extras(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), child) {
                    (k, _) if SIGNED.contains(&k) => {}
                    (k, Value::Object(entries)) if MAPS.contains(&k) => {
                        entries.values_mut().for_each(with_extras)
                    }
                    (_, child) => with_extras(child),
                }
            }
            map.insert("from_a_newer_version".into(), json!({"nested": [1, "two"]}));
            map.insert("zz_flag".into(), json!(true));
        }
        Value::Array(items) => items.iter_mut().for_each(with_extras),
        _ => {}
    }
}

fn reads_the_same<T: DeserializeOwned + PartialEq + Debug>(sample: Value) {
    let plain: T = serde_json::from_value(sample.clone())
        .unwrap_or_else(|e| panic!("sample {sample} does not parse: {e}"));
    let mut extended = sample;
    with_extras(&mut extended);
    let read: T = serde_json::from_value(extended.clone())
        .unwrap_or_else(|e| panic!("{} refused {extended}: {e}", std::any::type_name::<T>()));
    assert_eq!(read, plain, "{}", std::any::type_name::<T>());
}

fn envelope() -> Value {
    json!({"payloadType": "application/vnd.slipway.release+json", "payload": "e30=",
           "signatures": [{"keyid": "abc", "sig": "c2ln"}]})
}

fn spec() -> Value {
    json!({"name": "web", "image": "r.example/web", "listen": 8080, "container_port": 80})
}

#[test]
fn the_controller_reads_newer_agents_and_clis() {
    reads_the_same::<RegisterRequest>(json!({"labels": {"role": "web"}, "agent_version": "0.2.0"}));
    reads_the_same::<HostStatus>(json!({"app": "web", "seq": 3, "image": "r/web@sha256:00",
        "phase": {"failed": {"reason": "unhealthy"}}, "expired_at": "2030-01-01T00:00:00Z"}));
    reads_the_same::<HostStatus>(json!({"app": "web", "seq": 3, "phase": "live"}));
    reads_the_same::<CreateReleaseRequest>(
        json!({"image": "r/web:v2", "annotations": {"commit": "abc"}}),
    );
    reads_the_same::<RollbackRequest>(json!({"to_seq": 2, "now": true}));
    reads_the_same::<CreateTokenRequest>(json!({"name": "a", "role": "agent", "host": "h1"}));
    reads_the_same::<LogFrame>(json!({"stream": "stderr", "line": "oops"}));
    reads_the_same::<LogFrame>(json!({"error": "no container of app `web` on this host"}));
}

#[test]
fn agents_and_clis_read_a_newer_controller() {
    reads_the_same::<ErrorBody>(json!({"error": "nope"}));
    reads_the_same::<LogRequests>(json!({"requests": [{"id": "ab12", "app": "web",
        "since": "2030-01-01T00:00:00Z", "tail": 10, "follow": true}]}));
    reads_the_same::<LogFrame>(json!({"host": "h1", "stream": "stdout", "line": "hi",
        "note": "now following release 3"}));
    reads_the_same::<DesiredSetBody>(json!({"version": "v1", "releases": {"web": envelope()}}));
    reads_the_same::<HostInfo>(
        json!({"host": "h1", "labels": {"a": "b"}, "agent_version": "0.1.0",
        "registered_at": "2030-01-01T00:00:00Z", "last_seen": "2030-01-01T00:00:00Z",
        "stale": [{"app": "web", "seq": 1, "expired_at": "2030-01-01T00:00:00Z"}],
        "skew": "+1 minor"}),
    );
    reads_the_same::<StatusRow>(
        json!({"host": "h1", "app": "web", "seq": 1, "phase": "baking",
        "updated_at": "2030-01-01T00:00:00Z"}),
    );
    reads_the_same::<AppInfo>(
        json!({"name": "web", "version": 2, "spec": spec(), "updated_at": "2030-01-01T00:00:00Z"}),
    );
    reads_the_same::<ReleaseInfo>(json!({"app": "web", "seq": 2, "image": "r/web@sha256:00",
        "requested": "r/web:v2", "spec_version": 1, "rollback_of": 1, "created_by": "ci",
        "created_at": "2030-01-01T00:00:00Z", "expires": "2030-01-08T00:00:00Z",
        "envelope": envelope()}));
    reads_the_same::<CreatedToken>(json!({"token": "swt_x", "info": {"name": "ci",
        "role": "admin", "created_at": "2030-01-01T00:00:00Z"}}));
    reads_the_same::<AuditEntry>(json!({"id": 1, "at": "2030-01-01T00:00:00Z", "actor": "ci",
        "action": "release.create", "object": "release/web/2", "detail": "x"}));
    reads_the_same::<RolloutInfo>(json!({"app": "web", "seq": 2, "kind": "release",
        "state": "awaiting-promotion", "waves": [["h1"], ["h2", "h3"]], "started": 1,
        "failures": 0, "max_failures": 1, "reason": "waiting", "stable_seq": 1,
        "hosts": [{"host": "h1", "wave": 0, "desired_seq": 2, "reported_seq": 2,
                   "phase": "live"}], "updated_at": "2030-01-01T00:00:00Z"}));
}

#[test]
fn the_signed_release_stays_strict() {
    let mut e = envelope();
    e["from_a_newer_version"] = json!(1);
    assert!(serde_json::from_value::<slipway_proto::Envelope>(e).is_err());
    let mut s = spec();
    s["from_a_newer_version"] = json!(1);
    let e = serde_json::from_value::<slipway_proto::AppSpec>(s).unwrap_err();
    assert!(e.to_string().contains("from_a_newer_version"), "{e}");
}
