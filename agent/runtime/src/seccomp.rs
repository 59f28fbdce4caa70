//! Seccomp: Docker's default profile (kept as data in `seccomp/docker-default.json`, see
//! `seccomp/README.md`) or an app's own profile file, turned into the OCI `linux.seccomp`
//! form the way moby does it: the architectures of this machine, and only the rules whose
//! `includes`/`excludes` hold for the container's capabilities, architecture and kernel.

use crate::error::BundleError;
use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;

/// Docker's default profile, in Docker's format.
pub const DOCKER_DEFAULT: &str = include_str!("../seccomp/docker-default.json");

/// Largest profile file we read: Docker's is 13 KB.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// A profile in Docker's format (an OCI-form profile reads the same: it has no conditions).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: Value,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<Value>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: Value,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What the rules are evaluated against.
pub struct Target<'a> {
    /// The container's bounding capabilities.
    pub caps: &'a HashSet<Capability>,
    /// Go-style architecture name (`amd64`), as profiles write it.
    pub arch: &'static str,
    /// libseccomp's name of the native architecture (`SCMP_ARCH_X86_64`).
    pub native: &'static str,
    /// Running kernel (major, minor).
    pub kernel: (u32, u32),
}

impl Target<'_> {
    /// This machine, for a container with `caps`.
    pub fn host(caps: &HashSet<Capability>) -> Target<'_> {
        let (arch, native) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
            "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
            "x86" => ("386", "SCMP_ARCH_X86"),
            "arm" => ("arm", "SCMP_ARCH_ARM"),
            "s390x" => ("s390x", "SCMP_ARCH_S390X"),
            "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
            "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
            other => (other, "SCMP_ARCH_NATIVE"),
        };
        Target {
            caps,
            arch,
            native,
            kernel: kernel_version(),
        }
    }
}

/// (major, minor) of the running kernel; (0, 0) when unreadable (minKernel rules then drop).
pub fn kernel_version() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_kernel(&r))
        .unwrap_or((0, 0))
}

fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Profile {
    /// Docker's default profile.
    pub fn docker_default() -> Profile {
        serde_json::from_str(DOCKER_DEFAULT).expect("the bundled Docker profile parses")
    }

    /// Reads a profile file; the error names the app and the file.
    pub fn load(app: &str, path: &Path) -> Result<Profile, BundleError> {
        use std::io::Read;
        let bad = |reason: String| BundleError::Seccomp {
            app: app.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PROFILE_BYTES).read_to_string(&mut text))
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        let p: Profile = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not JSON a seccomp profile can be read from: {e}")))?;
        // Evaluate once now, so a profile with a bad action or architecture fails here.
        p.to_oci(&Target::host(&HashSet::new()))
            .map_err(|e| bad(e.to_string()))?;
        Ok(p)
    }

    /// The OCI form of this profile for `target`.
    pub fn to_oci(&self, target: &Target<'_>) -> Result<LinuxSeccomp, serde_json::Error> {
        let mut arches = self.architectures.clone();
        for a in self
            .arch_map
            .iter()
            .filter(|a| a.architecture == target.native)
        {
            arches.push(a.architecture.clone());
            arches.extend(a.sub_architectures.iter().flatten().cloned());
        }
        let caps: HashSet<String> = target.caps.iter().map(|c| format!("CAP_{c}")).collect();
        let newer = |v: &Option<String>| {
            v.as_deref()
                .and_then(parse_kernel)
                .is_some_and(|k| target.kernel >= k)
        };
        let mut syscalls = Vec::new();
        for r in &self.syscalls {
            let ex = &r.excludes;
            if ex.arches.iter().any(|a| a == target.arch)
                || ex.caps.iter().any(|c| caps.contains(c))
                || newer(&ex.min_kernel)
            {
                continue;
            }
            let inc = &r.includes;
            if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == target.arch))
                || !inc.caps.iter().all(|c| caps.contains(c))
                || (inc.min_kernel.is_some() && !newer(&inc.min_kernel))
            {
                continue;
            }
            let names: Vec<&String> = r.name.iter().chain(&r.names).collect();
            let mut call = json!({ "names": names, "action": r.action });
            if let Some(e) = r.errno_ret {
                call["errnoRet"] = e.into();
            }
            if let Some(a) = &r.args {
                call["args"] = a.clone();
            }
            syscalls.push(call);
        }
        let mut out = json!({
            "defaultAction": self.default_action,
            "architectures": arches,
            "syscalls": syscalls,
        });
        if let Some(e) = self.default_errno_ret {
            out["defaultErrnoRet"] = e.into();
        }
        if !self.flags.is_empty() {
            out["flags"] = self.flags.clone().into();
        }
        serde_json::from_value(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names().clone())
            .collect()
    }

    fn target(caps: &HashSet<Capability>) -> Target<'_> {
        Target {
            caps,
            arch: "amd64",
            native: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn docker_default_follows_caps_and_arch() {
        let p = Profile::docker_default();
        let none = HashSet::new();
        let s = p.to_oci(&target(&none)).unwrap();
        let n = names(&s);
        assert!(n.contains(&"read".to_string()) && n.contains(&"arch_prctl".to_string()));
        for denied in [
            "mount",
            "unshare",
            "keyctl",
            "add_key",
            "ptrace_x",
            "s390_runtime_instr",
        ] {
            if denied != "ptrace_x" {
                assert!(!n.contains(&denied.to_string()), "{denied} allowed");
            }
        }
        // ptrace is allowed from 4.8 on, as in Docker.
        assert!(n.contains(&"ptrace".to_string()));
        let arches = serde_json::to_value(s.architectures()).unwrap();
        assert_eq!(
            arches,
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(s.default_errno_ret(), Some(1));
        let admin: HashSet<_> = [Capability::SysAdmin].into();
        let n = names(&p.to_oci(&target(&admin)).unwrap());
        assert!(n.contains(&"mount".to_string()) && n.contains(&"unshare".to_string()));
    }

    #[test]
    fn a_bad_file_names_app_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.json");
        std::fs::write(&f, "{\"defaultAction\": ").unwrap();
        let e = Profile::load("web", &f).unwrap_err().to_string();
        assert!(
            e.contains("web") && e.contains(&f.display().to_string()),
            "{e}"
        );
        std::fs::write(&f, "{\"defaultAction\": \"SCMP_ACT_NOPE\"}").unwrap();
        assert!(Profile::load("web", &f).is_err());
        std::fs::write(&f, DOCKER_DEFAULT).unwrap();
        assert!(Profile::load("web", &f).is_ok());
    }
}
