#!/usr/bin/env bash
# CPU per request of HTTPS over HTTP/2: `slipway-agent proxy` against haproxy, same
# certificate, same nginx upstream on 127.0.0.1, same h2load run (N requests, 32 connections,
# 10 streams each). `perf stat -e task-clock` counts the CPU each proxy process used during
# the run, so the figure does not depend on what else shares the cores, as req/s does (the
# load generator and the upstream run on the same 2 cores). Rounds alternate haproxy and each
# binary given, each binary on a fresh process. Loopback only.
#
#   deploy/bench/proxy-cpu.sh                              # target/release/slipway-agent
#   deploy/bench/proxy-cpu.sh OLD_BINARY NEW_BINARY        # compare builds
#   ROUNDS=3 REQUESTS=200000 deploy/bench/proxy-cpu.sh
#
# 2026-12-04 (2 shared cores), us of proxy CPU per request, 2 rounds:
#   haproxy 12.9, 12.2; slipway glibc malloc 17.95, 17.65; HTTP/2 streams driven inside the
#   connection's task instead of a task each 20.9, 19.0 (slower: reverted).
#   Next run: haproxy 11.2, 11.0; glibc malloc 15.8, 17.2; jemalloc 14.1, 15.9 (kept).
#   This script, HEAD against the glibc build: haproxy 11.14; glibc 16.60 (1.49x);
#   jemalloc 14.43 us (1.29x); req/s 82,152 vs haproxy 88,468 in round 2.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/upstream.sh
source "$ROOT/deploy/bench/upstream.sh"
ROUNDS=${ROUNDS:-2}
REQUESTS=${REQUESTS:-200000}
if (($# == 0)); then set -- "${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway-agent"; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need=()
for c in haproxy nginx h2load perf openssl curl; do
  command -v "$c" >/dev/null || need+=("$c")
done
if ((${#need[@]})); then
  pkgs=$(sed 's/\bnginx\b/nginx-light/; s/\bh2load\b/nghttp2-client/; s/\bperf\b/linux-perf/' <<<"${need[*]}")
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}; install them (apt-get install -y $pkgs)"
  say "Installing $pkgs"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs >/dev/null
fi
for b in "$@"; do
  [[ -x $b ]] || die "$b is not an executable (build it: cargo build --release -p slipway-agent)"
done

WORK=$(mktemp -d /tmp/slipway-bench-proxy-cpu.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

read -r UP HA SW SW_PLAIN < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

start_upstream "$WORK" "$UP"

self_signed "$WORK" "DNS:localhost"

haproxy_config "$WORK" 2 "$UP" "$HA"
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
HA_PID=$!
PIDS+=($HA_PID)

cat >"$WORK/routes.json" <<JSON
{"version": 1, "routes": [{"app": "bench-edge", "listen": 0, "protocol": "http",
  "upstream": {"id": "nginx", "addr": "127.0.0.1:$UP"},
  "edge": {"hosts": ["localhost"], "tls": {"cert": "$WORK/cert.pem", "key": "$WORK/key.pem"},
           "redirect_https": false}}]}
JSON

answers() {
  for _ in $(seq 100); do
    curl -fsSk -o /dev/null "https://localhost:$1/" 2>/dev/null && return 0
    sleep 0.05
  done
  cat "$WORK"/*.log >&2
  die "nothing answers HTTPS on 127.0.0.1:$1"
}

# measure NAME PID PORT: prints "NAME us_per_request req_per_s"
measure() {
  h2load -n 20000 -c 32 -m 10 -t 1 "https://localhost:$3/" >/dev/null 2>&1 # warm-up
  perf stat -e task-clock -x, -o "$WORK/stat" -p "$2" &
  local stat=$! out ms rps ok
  sleep 0.2
  out=$(h2load -n "$REQUESTS" -c 32 -m 10 -t 1 "https://localhost:$3/" 2>&1)
  kill -INT "$stat"
  wait "$stat" 2>/dev/null || true
  ok=$(grep -o '[0-9]* succeeded' <<<"$out" | cut -d' ' -f1)
  [[ $ok == "$REQUESTS" ]] || die "$1: $ok of $REQUESTS requests succeeded"
  ms=$(awk -F, '/task-clock/ {print $1}' "$WORK/stat")
  rps=$(grep -o '[0-9.]* req/s' <<<"$out" | head -1 | cut -d' ' -f1)
  python3 -c "print('$1', round($ms * 1000 / $REQUESTS, 2), round($rps))"
}

answers "$HA"
RESULTS=()
for round in $(seq "$ROUNDS"); do
  say "Round $round of $ROUNDS"
  r=$(measure haproxy "$HA_PID" "$HA"); RESULTS+=("$r"); echo "$r" >&2
  i=0
  for b in "$@"; do
    i=$((i + 1))
    rm -f "$WORK/proxy.sock"
    TOKIO_WORKER_THREADS=2 SLIPWAY_LOG=warn "$b" proxy --control-socket "$WORK/proxy.sock" \
      --state "$WORK/routes.json" --bind 127.0.0.1 --http-workers 2 \
      --http-port "$SW_PLAIN" --https-port "$SW" >>"$WORK/proxy.log" 2>&1 &
    pid=$!
    answers "$SW"
    r=$(measure "slipway#$i" "$pid" "$SW"); RESULTS+=("$r"); echo "$r ($b)" >&2
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
done

echo
printf '%-12s %14s %10s\n' proxy "us/request" "req/s"
printf '%s\n' "${RESULTS[@]}" | awk '{printf "%-12s %14s %10s\n", $1, $2, $3}'
echo
printf '%s\n' "${RESULTS[@]}" | awk '
  {cpu[$1] += $2; n[$1]++}
  END {
    for (k in cpu) if (k != "haproxy")
      printf "%s: CPU per request %.2fx of haproxy (means over %d rounds: %.2f vs %.2f us)\n",
        k, cpu[k] / n[k] / (cpu["haproxy"] / n["haproxy"]), n[k], cpu[k] / n[k], cpu["haproxy"] / n["haproxy"]
  }'
