//! Defaults of the container runtime, each with the reason it is what it is.

use std::time::Duration;

/// Where per-container records, bundles, upper dirs and logs live; survives reboots like the
/// rest of `/var/lib/slipway`.
pub const STATE_DIR: &str = "/var/lib/slipway/containers";
/// runc's own state is private to Slipway so `runc list` shows only our containers; tmpfs,
/// because a container does not outlive a reboot.
pub const RUNC_ROOT: &str = "/run/slipway/runc";
/// The runc binary, found on `PATH` (Debian's `runc`).
pub const RUNC: &str = "runc";
/// Where Debian's `containernetworking-plugins` installs bridge, host-local and loopback.
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";
/// Bridge shared by all containers of this host.
pub const CNI_BRIDGE: &str = "slipway0";
/// Same private range as podman's default; big enough for any number of releases per host.
pub const CNI_SUBNET: &str = "10.88.0.0/16";
/// Egress NAT on: containers reach the network as the host does, as with Docker.
pub const CNI_MASQUERADE: bool = true;
/// CNI network name; host-local keys its allocations by it.
pub const CNI_NETWORK: &str = "slipway";
/// The CNI spec version we speak; Debian's plugins (1.1) support it.
pub const CNI_VERSION: &str = "1.0.0";
/// Interface name of the container's side of the veth pair.
pub const CNI_IFNAME: &str = "eth0";
/// A CNI plugin that takes longer than this is stuck (they normally answer in milliseconds).
pub const CNI_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of the named network namespaces under `/run/netns`, so an operator can tell ours.
pub const NETNS_PREFIX: &str = "slipway-";
/// cgroup parent of every container (`/sys/fs/cgroup/<controller>/slipway/<id>` on v1).
pub const CGROUP_PARENT: &str = "/slipway";
/// CFS period for CPU limits: the kernel default, so `cpus = 0.5` is a 50 ms quota.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Highest uid/gid an image may ask for: above `i32::MAX` ids read as negative in many
/// interfaces, and `u32::MAX` means "unchanged" to `setresuid`.
pub const MAX_ID: u32 = i32::MAX as u32;
/// Longest working directory an image may ask for (PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// A log file is copied to `<name>.1` and truncated when it grows past this (`[runtime]
/// log_max_size`): two of them per stream keep a day of a chatty app on a small disk.
pub const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Smallest `log_max_size` accepted: below it rotation would run nonstop for a busy app.
pub const LOG_MIN_BYTES: u64 = 64 * 1024;
/// How often a supervised container reaps orphaned exec'd processes.
pub const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// A log's length is noted with the time at most this often (its `.times` index), so
/// `logs --since` is off by no more than this.
pub const LOG_TIMES_GRAIN: Duration = Duration::from_secs(1);
/// A log's index is kept under the cap / this (trimmed to its newer half past it), so it
/// adds little to the disk a stream takes even for an app writing a byte a second.
pub const LOG_TIMES_SHARE: u64 = 32;
/// ... but not under this, so a small cap still leaves hours of index.
pub const LOG_TIMES_MIN: u64 = 16 * 1024;
/// After a burst of writes wakes the log watcher, it checks sizes again no sooner than this:
/// a container writing nonstop costs the agent at most 1 / this wake-ups a second, and
/// overshoots the cap by what it writes in this long.
pub const LOG_WATCH_PAUSE: Duration = Duration::from_millis(10);
/// Discarded containers of one app whose logs are kept for post-mortems.
pub const DISCARDED_LOGS_KEPT: usize = 3;
/// A runc command (other than exec) that takes longer than this is stuck.
pub const RUNC_TIMEOUT: Duration = Duration::from_secs(60);
/// After killing a timed-out exec'd process, runc exec gets this long to reap it and exit.
pub const EXEC_KILL_WAIT: Duration = Duration::from_secs(2);
/// After SIGKILL a process dies at once; wait this long before calling it stuck.
pub const KILL_WAIT: Duration = Duration::from_secs(10);
/// Open files per container: a server needs more than the kernel's 1024.
pub const NOFILE: u64 = 65_536;
/// Cap of a container's secrets tmpfs (its config.json and secret files of at most 64 KiB
/// each); tmpfs takes only the pages it holds.
pub const SECRETS_TMPFS_SIZE: &str = "size=16m";
/// Size of the tmpfs `/tmp` of a read-only container.
pub const TMP_SIZE: &str = "size=65536k";
/// Image env when the image sets no PATH (the value runc and Docker use).
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Paths masked in every container, as Docker masks them: kernel state a container must not
/// read (`/proc/kcore`, `/proc/keys`, timers, firmware, power capping energy counters).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths read-only in every container, as in Docker: kernel knobs a container must not turn.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Longest hostname (a DNS label; `sethostname` allows 64, resolvers 63).
pub const MAX_HOSTNAME: usize = 63;
/// resolv.conf options every container gets unless its config sets them: a lookup gives up
/// after 2 tries of 1 s instead of glibc's 2 x 5 s (x servers), so it never seems to hang.
pub const RESOLV_OPTIONS: [&str; 2] = ["timeout:1", "attempts:2"];
/// The host's resolver config, copied into containers.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of upstream servers, used when the host points at its stub.
pub const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// Signal that asks a container to stop when its image sets no STOPSIGNAL.
pub const STOP_SIGNAL: &str = "TERM";
/// First runc with the fix for the leaked-fd escape CVE-2024-21626.
pub const RUNC_FIX_2024: (u32, u32, u32) = (1, 1, 12);
/// First runc of each maintained line with the fixes for the /dev/null, /dev/console and
/// procfs-write escapes CVE-2025-31133, CVE-2025-52565, CVE-2025-52881 (1.4 has them all).
pub const RUNC_FIX_2025: [(u32, u32, u32); 3] = [(1, 2, 8), (1, 3, 3), (1, 4, 0)];
