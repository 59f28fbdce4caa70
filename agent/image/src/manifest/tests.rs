use super::*;
use serde_json::json;

fn d(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn digest_of(v: &Value) -> (Digest, Vec<u8>) {
    let b = serde_json::to_vec(v).unwrap();
    (Digest::of(&b), b)
}

fn manifest(layers: Value) -> Value {
    json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 10},
        "layers": layers})
}

fn err_of(v: Value) -> String {
    let (dg, b) = digest_of(&v);
    let e = parse_document(&dg, &b).unwrap_err().to_string();
    assert!(e.contains(&dg.to_string()), "error names the digest: {e}");
    e
}

fn layer(extra: Value) -> Value {
    let mut l = json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d(2), "size": 100});
    l.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    l
}

#[test]
fn accepts_a_plain_manifest() {
    let (dg, b) = digest_of(&manifest(json!([layer(json!({}))])));
    match parse_document(&dg, &b).unwrap() {
        Document::Manifest(m) => {
            assert_eq!(m.layers.len(), 1);
            assert_eq!(m.layers[0].1, Compression::Gzip);
        }
        Document::Index(_) => panic!("not an index"),
    }
}

#[test]
fn refuses_schema1() {
    let e = err_of(json!({"schemaVersion": 1, "name": "x", "fsLayers": []}));
    assert!(e.contains("schema1"), "{e}");
    let e = err_of(
        json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}),
    );
    assert!(e.contains("schema1"), "{e}");
}

#[test]
fn refuses_documents_mixing_manifests_and_layers() {
    let mut m = manifest(json!([layer(json!({}))]));
    m["manifests"] = json!([{"mediaType": MEDIA_OCI_MANIFEST, "digest": d(3), "size": 5}]);
    let e = err_of(m);
    assert!(e.contains("mixes `manifests`"), "{e}");
}

#[test]
fn refuses_foreign_urls() {
    let e = err_of(manifest(json!([layer(
        json!({"urls": ["https://evil.example/l.tgz"]})
    )])));
    assert!(e.contains("foreign URLs"), "{e}");
    let e = err_of(manifest(json!([layer(
        json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"})
    )])));
    assert!(e.contains("foreign"), "{e}");
}

#[test]
fn refuses_negative_and_absurd_sizes() {
    let e = err_of(manifest(json!([layer(json!({"size": -1}))])));
    assert!(e.contains("negative size"), "{e}");
    let e = err_of(manifest(json!([layer(json!({"size": 1u64 << 60}))])));
    assert!(e.contains("above the limit"), "{e}");
    let e = err_of(manifest(json!([layer(json!({"size": "12"}))])));
    assert!(e.contains("no valid size"), "{e}");
}

#[test]
fn refuses_bad_digests_and_media_types() {
    let e = err_of(manifest(json!([layer(json!({"digest": "sha512:abcd"}))])));
    assert!(e.contains("is not sha256"), "{e}");
    let e = err_of(manifest(json!([layer(
        json!({"mediaType": "application/x-helm"})
    )])));
    assert!(e.contains("not a supported layer type"), "{e}");
}

#[test]
fn picks_host_platform_from_index() {
    let (os, arch) = host_platform();
    let idx = json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": d(4), "size": 5, "platform": {"os": "windows", "architecture": arch}},
        {"mediaType": MEDIA_OCI_MANIFEST, "digest": d(5), "size": 5, "platform": {"os": os, "architecture": arch}},
    ]});
    let (dg, b) = digest_of(&idx);
    let Document::Index(entries) = parse_document(&dg, &b).unwrap() else {
        panic!("index expected")
    };
    assert_eq!(
        select_platform(&dg, &entries).unwrap().digest.to_string(),
        d(5)
    );
    let e = select_platform(&dg, &entries[..1]).unwrap_err().to_string();
    assert!(
        e.contains("no manifest for linux/") && e.contains("windows/"),
        "{e}"
    );
}

#[test]
fn config_diff_ids_must_match_layers() {
    let cfg = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [d(6)]}});
    let (dg, b) = digest_of(&cfg);
    assert!(parse_config(&dg, &b, 1).is_ok());
    let e = parse_config(&dg, &b, 2).unwrap_err().to_string();
    assert!(
        e.contains("1 diff_ids for 2 layers") && e.contains(&dg.to_string()),
        "{e}"
    );
}
