//! The OCI runtime `config.json` of one container, built from the image config (untrusted:
//! every field is checked) and the release's app spec (signed, already validated).

use crate::defaults;
use crate::error::BundleError;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, UserBuilder,
};
use slipway_proto::AppSpec;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

mod mounts;
mod user;
pub use mounts::Bind;
pub use user::user;

/// Processes in the container: enough for a server, a bound on fork bombs.
const PIDS_MAX: i64 = 4096;

/// Docker's default capabilities without `NET_RAW` (raw sockets spoof packets on the bridge;
/// ping works without it through `net.ipv4.ping_group_range`).
pub const CAPABILITIES: [Capability; 13] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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
    /// The container's hostname (at most 63 bytes).
    pub hostname: &'a str,
    /// Bind mounts the runtime prepared: `/etc` files, volumes, image VOLUMEs.
    pub binds: &'a [Bind],
    /// The seccomp profile; `None` runs unconfined.
    pub seccomp: Option<&'a crate::seccomp::Profile>,
    /// `VAR=value` entries of the spec's `[secrets]`, opened by the agent.
    pub secret_env: &'a [crate::secrets::Zeroizing<String>],
    /// The root's path: `rootfs` beside config.json, or absolute when the bundle lives
    /// elsewhere (on the secrets tmpfs).
    pub root: &'a Path,
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

/// The defaults without the app's `cap_drop` (`ALL`: all of them), plus its `cap_add`. Names
/// were checked when the spec was parsed; one this build of oci-spec does not know is skipped.
pub fn capabilities(spec: &AppSpec) -> HashSet<Capability> {
    let parse = |name: &String| {
        slipway_proto::spec::caps::canonical(name).and_then(|n| n.parse::<Capability>().ok())
    };
    let mut caps: HashSet<Capability> = CAPABILITIES.into_iter().collect();
    if spec.cap_drop.iter().any(|n| n.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    for c in spec.cap_drop.iter().filter_map(parse) {
        caps.remove(&c);
    }
    caps.extend(spec.cap_add.iter().filter_map(parse));
    caps
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
    let mut env = environment(image, cfg.env().as_deref().unwrap_or(&[]), spec)?;
    // Secrets last: they replace image variables of the same name (the spec's env cannot
    // name them, its validation refuses that).
    for entry in input.secret_env {
        let var = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != var);
        env.push(entry.to_string());
    }

    let caps = capabilities(spec);
    let err = |e| BundleError::Spec(e, input.id.to_string());
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
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

    let mounts = mounts::mounts(input.id, spec.read_only, input.binds)?;

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
        // Swap limit (memory + swap) equal to the limit: no swap, as the limit means.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .swap(bytes)
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
    let seccomp = match input.seccomp {
        Some(p) => Some(
            p.to_oci(&crate::seccomp::Target::host(&caps))
                .map_err(|e| BundleError::Field {
                    image: image.to_string(),
                    field: "seccomp profile",
                    reason: e.to_string(),
                })?,
        ),
        None => None,
    };
    let mut linux = LinuxBuilder::default()
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
        .masked_paths(defaults::MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(defaults::READONLY_PATHS.map(String::from).to_vec())
        .build()
        .map_err(err)?;
    linux.set_seccomp(seccomp);

    let mut out = Spec::default();
    out.set_hostname(Some(input.hostname.to_string()))
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path(input.root)
                .readonly(spec.read_only)
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

#[cfg(test)]
mod tests;
