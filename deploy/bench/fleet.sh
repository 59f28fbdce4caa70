#!/usr/bin/env bash
# Benchmark: a rollout of the busybox app to a fleet of hosts on this machine, each host a
# network namespace of its own (own address, proxy, agent, state dir and runc root) on a test
# LAN, in waves of 25%, while one keep-alive client per host keeps requesting. Prints the
# failed requests (goal 0), the wall time of the rollout against the sum of its configured
# pauses and bake windows, latency, and the agents' and proxies' memory. Not a test.
#
# Usage: deploy/bench/fleet.sh [--hosts N] [--pause D] [--bake D] [--logs DIR]
#   --hosts N   hosts in the fleet (default 20)
#   --pause D   pause between waves, humantime (default 5s)
#   --bake D    bake window of each host's swap (default 2s)
#   --logs DIR  copy every agent's and the controller's log to DIR
# Needs root, deploy/install-deps, cargo. Every address is on a LAN this script's test makes
# (10.250-254.x.0/24 with no uplink); nothing leaves the machine.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) export SLIPWAY_BENCH_HOSTS="$2"; shift 2 ;;
    --pause) export SLIPWAY_BENCH_PAUSE="$2"; shift 2 ;;
    --bake) export SLIPWAY_BENCH_BAKE="$2"; shift 2 ;;
    --logs) export SLIPWAY_BENCH_LOGS="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "run as root: hosts are network namespaces" >&2; exit 1; }
for tool in runc docker-registry ip nsenter unshare; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run deploy/install-deps" >&2; exit 1; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cd "$here"
echo "building the workspace (release) ..." >&2
cargo build --release -q --workspace
cargo test --release -q -p slipway-tests --test bench_fleet -- --ignored --nocapture --test-threads=1 2>&1 \
  | grep -v '^running\|^test result\|^$'
