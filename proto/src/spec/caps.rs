//! Linux capability names an app spec may add to or drop from the defaults (`cap_add`,
//! `cap_drop`), written as Docker does: `NET_RAW` or `CAP_NET_RAW`, any case.

use super::{invalid, SpecError};

/// Every capability Linux defines (capabilities(7)), without the `CAP_` prefix.
pub const NAMES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// A capability's canonical name (`NET_RAW`), or None when Linux has no such capability.
pub fn canonical(name: &str) -> Option<&'static str> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().copied().find(|n| *n == bare)
}

/// Checks `cap_add` / `cap_drop` (`ALL` is allowed in `cap_drop` only).
pub(super) fn validate(add: &[String], drop: &[String]) -> Result<(), SpecError> {
    for (key, list, all_ok) in [("cap_add", add, false), ("cap_drop", drop, true)] {
        for name in list {
            if all_ok && name.eq_ignore_ascii_case("ALL") {
                continue;
            }
            if canonical(name).is_none() {
                return Err(invalid(
                    key,
                    format!(
                        "`{name}` is not a Linux capability (e.g. NET_RAW, NET_ADMIN, SYS_PTRACE)"
                    ),
                ));
            }
        }
    }
    Ok(())
}
