//! Per-container network: a named network namespace under `/run/netns` (made in-process,
//! with `lo` up: [`crate::netns`]) wired by the CNI `bridge` + `host-local` plugins, exec'd
//! directly with the CNI environment and the network config on stdin. Egress NAT of the
//! default network is one nftables table per bridge ([`crate::nat`]). The config used for ADD
//! is saved beside the container so DEL gets the very same one, even after an agent crash.

use crate::config::CniConfig;
use crate::defaults;
use crate::error::NetworkError;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::OnceCell;

pub use crate::netns::{add as netns_add, del as netns_del, NETNS_DIR};

/// The CNI side of the runtime.
#[derive(Debug, Clone)]
pub struct Network {
    pub cni: CniConfig,
    /// host-local's allocation store, private to this runtime's state dir.
    pub ipam_dir: PathBuf,
    /// Set once the default network's egress NAT is as configured (installed, or removed
    /// for `masquerade = false`); a failure is tried again at the next ADD.
    nat: Arc<OnceCell<()>>,
}

/// Name under `/run/netns` of container `id` of the runtime whose runc root is `runc_root`:
/// `slipway-<runtime tag>-<id>`. The one place that names a netns; tests use it too.
pub fn netns_name(runc_root: &Path, id: &str) -> String {
    format!("{}{}-{id}", defaults::NETNS_PREFIX, runtime_tag(runc_root))
}

/// Short hash of a runc root: makes netns and cgroup names unique per runtime, so several
/// agents on one machine (test beds) never share them.
pub fn runtime_tag(runc_root: &Path) -> String {
    slipway_proto::Digest::of(runc_root.to_string_lossy().as_bytes()).hex()[..6].to_string()
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

impl Network {
    pub fn new(cni: CniConfig, ipam_dir: PathBuf) -> Network {
        Network {
            cni,
            ipam_dir,
            nat: Arc::default(),
        }
    }

    /// The default network's egress NAT, made (or removed) once per runtime. A config file
    /// of the operator's own brings its own NAT, if any.
    async fn ensure_nat(&self) -> Result<(), NetworkError> {
        if self.cni.netconf.is_some() {
            return Ok(());
        }
        self.nat
            .get_or_try_init(|| async {
                let (bridge, subnet) = (&self.cni.bridge, &self.cni.subnet);
                if self.cni.masquerade {
                    crate::nat::install(bridge, subnet).await?;
                    tracing::info!(bridge = %bridge, subnet = %subnet, table = %crate::nat::table_name(bridge), "egress NAT installed");
                } else {
                    crate::nat::remove(bridge, subnet).await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The network config list: the override file when set, else bridge + host-local.
    pub fn netconf(&self) -> Result<Value, NetworkError> {
        if let Some(path) = &self.cni.netconf {
            let bad = |reason: String| NetworkError::Netconf {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if v.get("type").is_none() && v.get("plugins").is_none() {
                return Err(bad(
                    "needs `type` (a network config) or `plugins` (a config list)".into(),
                ));
            }
            return Ok(v);
        }
        Ok(json!({
            "cniVersion": defaults::CNI_VERSION,
            "name": defaults::CNI_NETWORK,
            "plugins": [{
                "type": "bridge",
                "bridge": self.cni.bridge,
                "isGateway": true,
                // Egress NAT is the runtime's one nftables table per bridge (`nat`).
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": self.ipam_dir,
                    "ranges": [[{ "subnet": self.cni.subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            }]
        }))
    }

    /// ADD: each plugin of the list in order (and the egress NAT, the first time); returns
    /// the container's address.
    pub async fn add(&self, id: &str, netns: &Path, conf: &Value) -> Result<IpAddr, NetworkError> {
        // `lo` came up with the namespace (`netns::add`); NAT and `eth0` are independent.
        let nat = self.ensure_nat();
        let eth = async {
            let mut prev: Option<Value> = None;
            for mut p in plugins(conf) {
                if let Some(prev) = &prev {
                    p["prevResult"] = prev.clone();
                }
                prev = Some(
                    self.exec("ADD", id, netns, defaults::CNI_IFNAME, &p)
                        .await?,
                );
            }
            Ok::<_, NetworkError>(prev.unwrap_or(Value::Null))
        };
        let (nat, result) = tokio::join!(nat, eth);
        nat?;
        let result = result?;
        address(&result).ok_or_else(|| NetworkError::NoAddress {
            id: id.into(),
            result: result.to_string(),
        })
    }

    /// DEL: each plugin in reverse order. Plugins tolerate a netns that is already gone.
    pub async fn del(&self, id: &str, netns: &Path, conf: &Value) -> Result<(), NetworkError> {
        for p in plugins(conf).into_iter().rev() {
            self.exec("DEL", id, netns, defaults::CNI_IFNAME, &p)
                .await?;
        }
        Ok(())
    }

    async fn exec(
        &self,
        command: &'static str,
        id: &str,
        netns: &Path,
        ifname: &str,
        conf: &Value,
    ) -> Result<Value, NetworkError> {
        let plugin = conf["type"].as_str().unwrap_or_default().to_string();
        let fail = |reason: String| NetworkError::Plugin {
            command,
            plugin: plugin.clone(),
            id: id.into(),
            reason,
        };
        if plugin.is_empty() || plugin.contains('/') {
            return Err(fail("network config has no valid `type`".into()));
        }
        let bin = self.cni.plugin_dir.join(&plugin);
        let mut child = Command::new(&bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.cni.plugin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let bytes = serde_json::to_vec(conf).expect("json serializes");
        stdin
            .write_all(&bytes)
            .await
            .map_err(|e| fail(format!("writing the config: {e}")))?;
        drop(stdin);
        let out = tokio::time::timeout(defaults::CNI_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer within {} s",
                    defaults::CNI_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            // CNI errors are JSON on stdout: {"code":..,"msg":..,"details":..}.
            let reason = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    let msg = v["msg"].as_str()?.to_string();
                    Some(match v["details"].as_str() {
                        Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                        _ => msg,
                    })
                })
                .unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        String::from_utf8_lossy(&out.stdout).trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            return Err(fail(reason));
        }
        if command == "DEL" || out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable result: {e}")))
    }
}

/// The plugins of a config list (each with the list's name and version), or the one config.
fn plugins(conf: &Value) -> Vec<Value> {
    match conf["plugins"].as_array() {
        Some(list) => list
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p["name"] = conf["name"].clone();
                p["cniVersion"] = conf["cniVersion"].clone();
                p
            })
            .collect(),
        None => vec![conf.clone()],
    }
}

/// The first IP of the container's interface in a CNI result (`ips[].address`, CIDR form).
pub fn address(result: &Value) -> Option<IpAddr> {
    let ifaces = result["interfaces"].as_array();
    let ips = result["ips"].as_array()?;
    let in_sandbox = |ip: &&Value| match (ip["interface"].as_u64(), ifaces) {
        (Some(i), Some(ifs)) => ifs
            .get(i as usize)
            .is_some_and(|f| f["sandbox"].as_str().is_some_and(|s| !s.is_empty())),
        _ => true,
    };
    ips.iter()
        .filter(in_sandbox)
        .chain(ips.iter())
        .find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_comes_from_the_sandbox_interface() {
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0", "mac": "x"},
                {"name": "veth1", "mac": "y"},
                {"name": "eth0", "mac": "z", "sandbox": "/run/netns/a"}
            ],
            "ips": [{"interface": 2, "address": "10.213.1.5/24", "gateway": "10.213.1.1"}]
        });
        assert_eq!(address(&r), Some("10.213.1.5".parse().unwrap()));
        assert_eq!(address(&json!({"ips": []})), None);
    }

    #[test]
    fn default_netconf_uses_bridge_subnet_and_private_ipam_dir() {
        let n = Network::new(
            CniConfig {
                bridge: "swtest0".into(),
                subnet: "10.213.7.0/24".into(),
                ..CniConfig::default()
            },
            "/s/_ipam".into(),
        );
        let c = n.netconf().unwrap();
        let p = plugins(&c);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["type"], "bridge");
        assert_eq!(p[0]["bridge"], "swtest0");
        assert_eq!(p[0]["name"], defaults::CNI_NETWORK);
        assert_eq!(p[0]["ipam"]["ranges"][0][0]["subnet"], "10.213.7.0/24");
        assert_eq!(p[0]["ipam"]["dataDir"], "/s/_ipam");
        assert_eq!(
            p[0]["ipMasq"], false,
            "egress NAT is the runtime's nftables table"
        );
    }

    #[test]
    fn bad_override_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("net.json");
        std::fs::write(&f, "{\"name\":\"x\"}").unwrap();
        let n = Network::new(
            CniConfig {
                netconf: Some(f.clone()),
                ..CniConfig::default()
            },
            "/x".into(),
        );
        let e = n.netconf().unwrap_err().to_string();
        assert!(
            e.contains(&f.display().to_string()) && e.contains("plugins"),
            "{e}"
        );
    }
}
