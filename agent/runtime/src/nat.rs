//! Egress NAT of the default bridge network: one nftables table per bridge that masquerades
//! what the bridge's containers send out of their subnet. It is written once (one `nft`
//! transaction) when the runtime first wires a container, instead of the CNI bridge plugin's
//! `ipMasq`, which runs eight `iptables` processes for every container's ADD and more for its
//! DEL. Containers recorded with `ipMasq` (made before) keep their CNI rules until discarded.

use crate::error::NetworkError;
use std::net::IpAddr;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The nftables table (family `ip` or `ip6`, by the subnet) holding bridge `bridge`'s egress
/// NAT. The one place that names it; tests use it to clean up.
pub fn table_name(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("slipway_nat_{safe}")
}

/// The ruleset that makes `bridge`'s egress NAT: replaces the table atomically (declare,
/// delete, create in one transaction), so it is idempotent and survives agent restarts.
pub fn ruleset(bridge: &str, subnet: &str) -> Result<String, NetworkError> {
    if bridge.is_empty()
        || !bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(NetworkError::Nat {
            bridge: bridge.into(),
            reason: "a bridge name for egress NAT may have only letters, digits, '-', '_' and '.'"
                .into(),
        });
    }
    let (family, net) = parse_subnet(subnet).ok_or_else(|| NetworkError::Nat {
        bridge: bridge.into(),
        reason: format!("subnet `{subnet}` is not an address/prefix"),
    })?;
    let table = table_name(bridge);
    // Multicast is not NATed (as CNI's ipMasq rule leaves it), nor traffic within the subnet.
    let multicast = if family == "ip" {
        " ip daddr != 224.0.0.0/4"
    } else {
        " ip6 daddr != ff00::/8"
    };
    Ok(format!(
        "table {family} {table} {{}}\n\
         delete table {family} {table}\n\
         table {family} {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tiifname \"{bridge}\" {family} saddr {net} {family} daddr != {net}{multicast} masquerade comment \"slipway egress NAT\"\n\
         \t}}\n\
         }}\n"
    ))
}

/// Installs (or replaces) `bridge`'s egress NAT for `subnet`.
pub async fn install(bridge: &str, subnet: &str) -> Result<(), NetworkError> {
    let rules = ruleset(bridge, subnet)?;
    nft(bridge, &["-f", "-"], Some(rules)).await
}

/// Removes `bridge`'s egress NAT, if there is one (`masquerade = false`).
pub async fn remove(bridge: &str, subnet: &str) -> Result<(), NetworkError> {
    let family = parse_subnet(subnet).map_or("ip", |(f, _)| f);
    let table = table_name(bridge);
    // Declaring it first makes the delete succeed when there was none.
    let rules = format!("table {family} {table} {{}}\ndelete table {family} {table}\n");
    nft(bridge, &["-f", "-"], Some(rules)).await
}

async fn nft(bridge: &str, args: &[&str], stdin: Option<String>) -> Result<(), NetworkError> {
    let fail = |reason: String| NetworkError::Nat {
        bridge: bridge.into(),
        reason,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run `nft`: {e} (install nftables)")))?;
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .await
            .map_err(|e| fail(format!("writing to nft: {e}")))?;
    }
    drop(input);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// `ADDR/PREFIX` -> (nft family, normalized text), or None.
fn parse_subnet(s: &str) -> Option<(&'static str, String)> {
    let (addr, prefix) = s.trim().split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let (family, max) = match addr {
        IpAddr::V4(_) => ("ip", 32),
        IpAddr::V6(_) => ("ip6", 128),
    };
    (prefix <= max).then(|| (family, format!("{addr}/{prefix}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_names_the_bridge_and_subnet_and_refuses_a_bad_subnet() {
        let r = ruleset("sw-test.0", "10.1.2.0/24").unwrap();
        assert!(r.contains("table ip slipway_nat_sw_test_0 {"), "{r}");
        assert!(
            r.contains("iifname \"sw-test.0\" ip saddr 10.1.2.0/24 ip daddr != 10.1.2.0/24"),
            "{r}"
        );
        assert!(ruleset("b", "fd00::/64").unwrap().contains("table ip6 "));
        for bad in [
            "10.1.2.0",
            "10.1.2.0/33",
            "x/24",
            "10.0.0.0/24; flush ruleset",
        ] {
            let e = ruleset("b", bad).unwrap_err().to_string();
            assert!(e.contains("`b`") && e.contains(bad), "{e}");
        }
    }
}
