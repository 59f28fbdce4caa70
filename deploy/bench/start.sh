#!/usr/bin/env bash
# Container start benchmark (issue 4). In one run, on this host:
#  1. time from "image unpacked" (layer dirs on disk) to "busybox httpd answering on its
#     address" through slipway-runtime's Runtime::start (overlay, netns, CNI bridge ADD,
#     config.json, runc create + start), ROUNDS times;
#  2. the same for a plain `runc run -d` of a hand-made bundle (from `runc spec`, rootfs a
#     merged copy of the layers), once with its netns and CNI address made in advance and
#     once doing `ip netns add` + CNI bridge ADD + `runc run -d` by hand in the timed part;
#  3. RSS of the process embedding the runtime while it supervises CONTAINERS containers.
# Goals: runtime overhead < 50 ms per start; RSS < 30 MB. Traffic stays on a private bridge
# (swbench0, 10.213.250.0/24). Run as root; everything is removed at the end.
#
#   deploy/bench/start.sh                     # ROUNDS=20 CONTAINERS=50
#   ROUNDS=50 CONTAINERS=50 deploy/bench/start.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-20}
CONTAINERS=${CONTAINERS:-50}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (runc, netns, CNI and mounts need it)"
need=()
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
[[ -x /bin/busybox ]] && /bin/busybox --list | grep -qx httpd || need+=(busybox-static)
if ((${#need[@]})); then
  say "Installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

say "Building the benchmark (release)"
(cd "$ROOT" && cargo build --release -q -p slipway-runtime --example bench_start)

say "Host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(runc --version | head -1)"
"$TARGET/release/examples/bench_start" "$ROUNDS" "$CONTAINERS"
