//! The OCI runtime `config.json` of one container, built from the image config (untrusted:
//! every field is checked) and the release's app spec (signed, already validated).

use crate::defaults;
use crate::error::BundleError;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use slipway_proto::AppSpec;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Processes in the container: enough for a server, a bound on fork bombs.
const PIDS_MAX: i64 = 4096;

/// Everything a bundle is made of.
pub struct BundleInput<'a> {
    pub id: &'a str,
    /// `repository@sha256:...`, for error messages.
    pub image: &'a str,
    pub spec: &'a AppSpec,
    pub config: &'a ImageConfiguration,
    /// Reads `/etc/passwd` and `/etc/group` of the container's root to resolve user names.
    pub etc: &'a dyn EtcFiles,
    /// Path of the named network namespace to join.
    pub netns: &'a Path,
    /// Name of the container's cgroup under the Slipway parent (unique on the machine).
    pub cgroup: &'a str,
}

/// Read access to the image's `/etc/passwd` and `/etc/group`, confined to its root.
pub trait EtcFiles {
    /// Contents of `/etc/<name>` inside the container's root, if it exists.
    fn read(&self, name: &str) -> Option<String>;
}

/// `/etc` files of a mounted rootfs, opened with `RESOLVE_IN_ROOT` so an image's symlinks
/// can never point the agent at a host file.
pub struct RootfsEtc<'a>(pub &'a Path);

impl EtcFiles for RootfsEtc<'_> {
    fn read(&self, name: &str) -> Option<String> {
        use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
        use std::io::Read;
        let root = rustix::fs::open(
            self.0,
            OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::PATH,
            Mode::empty(),
        )
        .ok()?;
        let fd = openat2(
            &root,
            format!("etc/{name}"),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .take(1 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }
}

/// Builds the container's `config.json`.
pub fn build(input: &BundleInput<'_>) -> Result<Spec, BundleError> {
    let image = input.image;
    let empty = Default::default();
    let cfg = input.config.config().as_ref().unwrap_or(&empty);
    let spec = input.spec;

    let cwd = working_dir(image, cfg.working_dir().as_deref())?;
    let (uid, gid, extra) = user(image, cfg.user().as_deref().unwrap_or(""), input.etc)?;
    let args = command(image, cfg, spec)?;
    let env = environment(image, cfg.env().as_deref().unwrap_or(&[]), spec)?;

    let caps: HashSet<Capability> = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ]
    .into_iter()
    .collect();
    let err = |e| BundleError::Spec(e, input.id.to_string());
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .additional_gids(extra)
                .build()
                .map_err(err)?,
        )
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(nofile())
            .soft(nofile())
            .build()
            .map_err(err)?])
        .no_new_privileges(true)
        .build()
        .map_err(err)?;

    let mut mounts = oci_spec::runtime::get_default_mounts();
    if !spec.writable_rootfs {
        mounts.push(
            MountBuilder::default()
                .destination("/tmp")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec![
                    "nosuid".into(),
                    "nodev".into(),
                    "mode=1777".into(),
                    defaults::TMP_SIZE.into(),
                ])
                .build()
                .map_err(err)?,
        );
    }
    mounts.extend(volumes(input.id, spec)?);

    let namespaces: Vec<LinuxNamespace> = oci_spec::runtime::get_default_namespaces()
        .into_iter()
        .map(|ns| {
            if ns.typ() == LinuxNamespaceType::Network {
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(input.netns.to_path_buf())
                    .build()
            } else {
                Ok(ns)
            }
        })
        .collect::<Result<_, _>>()
        .map_err(err)?;

    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(err)?])
        .pids(
            LinuxPidsBuilder::default()
                .limit(PIDS_MAX)
                .build()
                .map_err(err)?,
        );
    if let Some(mb) = spec.resources.memory_mb {
        let bytes = (mb as i64).saturating_mul(1024 * 1024);
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .map_err(err)?,
        );
    }
    if let Some(cpus) = spec.resources.cpus {
        let quota = (cpus * defaults::CPU_PERIOD_US as f64).round() as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota.max(1000))
                .period(defaults::CPU_PERIOD_US)
                .build()
                .map_err(err)?,
        );
    }
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!(
            "{}/{}",
            defaults::CGROUP_PARENT,
            input.cgroup
        )))
        .resources(resources.build().map_err(err)?)
        // As Docker does: the netns is the container's own, so a non-root app may bind
        // port 80 and ping without any capability.
        .sysctl(std::collections::HashMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            ),
            (
                "net.ipv4.ping_group_range".to_string(),
                "0 2147483647".to_string(),
            ),
        ]))
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()
        .map_err(err)?;

    let mut out = Spec::default();
    out.set_hostname(Some(input.id.to_string()))
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(!spec.writable_rootfs)
                .build()
                .map_err(err)?,
        ))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux))
        .set_annotations(None);
    Ok(out)
}

/// [`defaults::NOFILE`], capped at the agent's own hard limit (runc cannot raise it).
fn nofile() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    hard.map_or(defaults::NOFILE, |h| h.min(defaults::NOFILE))
}

/// The working directory from the image, checked: absolute, no `..`, no NUL, not under
/// `/proc` (a `/proc/self/fd/N` cwd leaks a host fd into the container: CVE-2024-21626).
pub fn working_dir(image: &str, dir: Option<&str>) -> Result<PathBuf, BundleError> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Ok(PathBuf::from("/"));
    };
    let bad = |reason| BundleError::WorkingDir {
        image: image.to_string(),
        dir: dir.escape_debug().to_string(),
        reason,
    };
    if dir.len() > defaults::MAX_PATH_LEN {
        return Err(bad("is longer than PATH_MAX"));
    }
    if dir.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let p = Path::new(dir);
    if !p.is_absolute() {
        return Err(bad("is not an absolute path"));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("contains `..`"));
    }
    let first = p.components().nth(1);
    if matches!(first, Some(Component::Normal(n)) if n == "proc" || n == "sys" || n == "dev") {
        return Err(bad(
            "is inside /proc, /sys or /dev: a kernel file system cannot be a working dir (a /proc/self/fd path would expose host files)",
        ));
    }
    Ok(p.to_path_buf())
}

/// Resolves the image's `User` (`uid`, `uid:gid`, `name`, `name:group`, ...) to numeric ids,
/// reading names from the image's own `/etc/passwd` and `/etc/group`.
pub fn user(
    image: &str,
    spec: &str,
    etc: &dyn EtcFiles,
) -> Result<(u32, u32, Vec<u32>), BundleError> {
    let bad = |reason: String| BundleError::User {
        image: image.to_string(),
        user: spec.escape_debug().to_string(),
        reason,
    };
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    if spec.contains('\0') || spec.len() > 256 {
        return Err(bad("is not a user name or id".into()));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = etc.read("passwd").unwrap_or_default();
    // passwd: name:x:uid:gid:...
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let (uid, pw_gid) = match numeric_id(u) {
        Some(r) => {
            let uid = r.map_err(|e| bad(e.to_string()))?;
            let gid = entries
                .iter()
                .find(|f| f[2].parse() == Ok(uid))
                .and_then(|f| f[3].parse::<u32>().ok());
            (uid, gid)
        }
        None => {
            let f = entries.iter().find(|f| f[0] == u).ok_or_else(|| {
                bad(format!(
                    "names user `{u}`, which is not in the image's /etc/passwd"
                ))
            })?;
            let uid =
                parse_id(f[2]).map_err(|e| bad(format!("resolves to uid `{}`: {e}", f[2])))?;
            let gid =
                parse_id(f[3]).map_err(|e| bad(format!("resolves to gid `{}`: {e}", f[3])))?;
            (uid, Some(gid))
        }
    };
    let gid = match g {
        None => pw_gid.unwrap_or(0),
        Some(g) => match numeric_id(g) {
            Some(r) => r.map_err(|e| bad(format!("group {e}")))?,
            None => {
                let group = etc.read("group").unwrap_or_default();
                let f = group
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .ok_or_else(|| {
                        bad(format!(
                            "names group `{g}`, which is not in the image's /etc/group"
                        ))
                    })?;
                parse_id(f[2]).map_err(|e| bad(format!("group resolves to `{}`: {e}", f[2])))?
            }
        },
    };
    if uid > defaults::MAX_ID || gid > defaults::MAX_ID {
        return Err(bad(format!("resolves to an id above {}", defaults::MAX_ID)));
    }
    Ok((uid, gid, Vec::new()))
}

/// `Some` when `s` looks numeric (then it must be in range), `None` when it is a name.
fn numeric_id(s: &str) -> Option<Result<u32, &'static str>> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-')).then(|| parse_id(s))
}

fn parse_id(s: &str) -> Result<u32, &'static str> {
    match s.parse::<u64>() {
        Ok(n) if n <= defaults::MAX_ID as u64 => Ok(n as u32),
        Ok(_) => Err("is out of range (ids are 0..=2147483647)"),
        Err(_) => Err("is not a valid id (negative, empty or not a number)"),
    }
}

/// argv: the spec's entrypoint/command override the image's (a new entrypoint drops the
/// image's Cmd, as in Docker).
fn command(
    image: &str,
    cfg: &oci_spec::image::Config,
    spec: &AppSpec,
) -> Result<Vec<String>, BundleError> {
    let entry = match &spec.entrypoint {
        Some(e) => e.clone(),
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd = match (&spec.command, &spec.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(BundleError::NoCommand {
            image: image.to_string(),
        });
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(BundleError::Field {
            image: image.to_string(),
            field: "Entrypoint/Cmd",
            reason: "contains a NUL byte".into(),
        });
    }
    Ok(args)
}

/// Image env first, then the spec's env replaces variables of the same name.
fn environment(
    image: &str,
    image_env: &[String],
    spec: &AppSpec,
) -> Result<Vec<String>, BundleError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in image_env {
        let Some((k, v)) = e.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(BundleError::Field {
                image: image.to_string(),
                field: "Env",
                reason: format!("entry `{}` is not NAME=VALUE", e.escape_debug()),
            });
        };
        if e.contains('\0') {
            return Err(BundleError::Field {
                image: image.to_string(),
                field: "Env",
                reason: format!("entry `{}` contains a NUL byte", k.escape_debug()),
            });
        }
        out.retain(|(ok, _)| ok != k);
        out.push((k.to_string(), v.to_string()));
    }
    for (k, v) in &spec.env {
        out.retain(|(ok, _)| ok != k);
        out.push((k.clone(), v.clone()));
    }
    let mut env: Vec<String> = out.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, defaults::PATH_ENV.to_string());
    }
    Ok(env)
}

fn volumes(id: &str, spec: &AppSpec) -> Result<Vec<Mount>, BundleError> {
    spec.volumes
        .iter()
        .map(|v| {
            let mut opts = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
            opts.push(if v.read_only { "ro" } else { "rw" }.into());
            MountBuilder::default()
                .destination(v.container.clone())
                .typ("bind")
                .source(v.host.clone())
                .options(opts)
                .build()
                .map_err(|e| BundleError::Spec(e, id.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
