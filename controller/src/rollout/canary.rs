//! Which hosts of an app go first: hosts labelled `slipway.canary=true`, then every other
//! host in the order of a stable hash of (host id, app). The hash spreads each app's canary
//! over the fleet (not always the alphabetically first host) and keeps the order the same
//! on every replica and every release.

use std::collections::BTreeSet;

/// The label that makes a host its apps' canary.
pub const CANARY_LABEL: (&str, &str) = ("slipway.canary", "true");

/// Whether `labels` mark a host as a preferred canary.
pub fn is_canary(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(CANARY_LABEL.0).map(String::as_str) == Some(CANARY_LABEL.1)
}

/// `hosts` (deduplicated) in wave order for `app`: `canaries` first, each group by hash.
pub fn order(app: &str, hosts: Vec<String>, canaries: &BTreeSet<String>) -> Vec<String> {
    let mut keyed: Vec<(bool, u64, String)> = hosts
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|h| (!canaries.contains(&h), rank(&h, app), h))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, _, h)| h).collect()
}

/// First 8 bytes of sha256("host\0app"): stable across processes and versions.
fn rank(host: &str, app: &str) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(host.as_bytes());
    ctx.update(b"\0");
    ctx.update(app.as_bytes());
    let d = ctx.finish();
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("h{i:02}")).collect()
    }

    #[test]
    fn labelled_canaries_go_first() {
        let canaries: BTreeSet<String> = ["h07".to_string(), "h03".to_string()].into();
        let o = order("web", hosts(10), &canaries);
        let first: BTreeSet<String> = o[..2].iter().cloned().collect();
        assert_eq!(first, canaries);
        assert_eq!(o.len(), 10);
    }

    #[test]
    fn the_order_is_stable_whatever_the_input_order() {
        let mut rev = hosts(20);
        rev.reverse();
        rev.push("h05".into());
        let a = order("web", hosts(20), &BTreeSet::new());
        assert_eq!(a, order("web", rev, &BTreeSet::new()));
        assert_eq!(a.len(), 20, "deduplicated");
    }

    #[test]
    fn the_canary_is_not_always_the_first_host_and_differs_between_apps() {
        let firsts: BTreeSet<String> = (0..20)
            .map(|i| order(&format!("app{i}"), hosts(20), &BTreeSet::new())[0].clone())
            .collect();
        assert!(
            firsts.len() > 5,
            "canaries spread over the fleet: {firsts:?}"
        );
        assert!(firsts.iter().any(|h| h != "h00"));
    }
}
