#!/usr/bin/env bash
# Proxy overhead: throughput and p99 through `slipway-agent proxy` vs haproxy, both in front
# of the same nginx upstream on 127.0.0.1, same wrk settings, one run each, HTTP and TCP.
# Then the edge: HTTPS over HTTP/1.1 (wrk) and HTTP/2 (h2load) with the same certificate,
# the same route with 100 hosts routed instead of 1, and a proxy upgrade (systemctl reload's
# SIGUSR2 takeover) in the middle of an HTTP/2 run, which must fail no request: that row uses
# agent/proxy/examples/h2_retry_load.rs, which reconnects after a GOAWAY and resends what the
# server did not process, as browsers do (h2load does neither). EDGE=0 skips the edge.
# Loopback only; each run lasts DURATION (default 5s). Prints a table and slipway/haproxy ratios.
#
#   deploy/bench/proxy.sh                 # builds target/release/slipway-agent if missing
#   SLIPWAY_AGENT=/path/to/slipway-agent DURATION=5s CONNECTIONS=32 WRK_THREADS=1 deploy/bench/proxy.sh
#   PROXY_THREADS=2 sets both proxies' worker threads (haproxy nbthread; slipway's tokio
#   workers and --http-workers).
#   SLIPWAY_AGENT may also be the stand-in runner built by
#   `cargo build --release -p slipway-proxy --example bench_proxy` (same flags).
#   H2_RETRY_LOAD=/path/to/h2_retry_load (built if missing), H2_REQUESTS=200000.
#
# Notes, HTTP/2 (2026-12-03, branch h2; 2 shared cores, so ratios of one run swing by
# +-0.15 between runs of the same binaries: compare several runs, or CPU per request).
#   SLIPWAY_AGENT=target/release/examples/bench_proxy EDGE=1 DURATION=5s deploy/bench/proxy.sh
#   HTTPS h2 slipway/haproxy   before: 0.73x 0.82x 0.67x, p99 1.28x 1.49x 1.23x
#                              after:  0.90x 0.91x 0.64x, p99 1.11x 1.21x 3.56x
#   upgrade mid-run (h2_retry_load, 32x10): 0 failed, 46 requests resent on a new connection
#     (before: h2load counted 133 failed with slipway-agent: it never reconnects after a
#     GOAWAY; the old bench_proxy stand-in died on SIGUSR2, hence its 320/3840 failed)
#   CPU per request, `perf stat -e task-clock` on the proxy under
#   `h2load -n 200000 -c 32 -m 10 -t 1` (steadier than req/s here):
#     slipway before 21.6 us, after 17.8 us (idle watcher no longer woken per request and
#     the request future boxed, together -3.2 us; per-worker cut signal -0.6 us);
#     haproxy 10.0 us.
#   2026-12-04: the agent on jemalloc, CPU per request 15.8/17.2 -> 14.1/15.9 us (haproxy
#     11.2/11.0), measured with deploy/bench/proxy-cpu.sh. This script's run the same day:
#     HTTPS h2 0.80x (p99 1.29x), h1 0.99x (p99 2.41x), 100 hosts vs 1 0.95x, upgrade 0 failed.
#   Where the rest goes (`perf record --call-graph dwarf`): hyper's h1 client dispatch to
#   the upstream (channel + oneshot + wakeups per request), the h2 server's per-stream task
#   and frame buffering (memmove), kernel socket I/O. tokio's event_interval (7, 61, 200)
#   made no measurable difference; h2 window/frame sizes were left alone (bodiless requests
#   and 24-byte responses reach no window or frame limit).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=deploy/bench/upstream.sh
source "$ROOT/deploy/bench/upstream.sh"
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
PROXY_THREADS=${PROXY_THREADS:-2}
BIN=${SLIPWAY_AGENT:-${CARGO_TARGET_DIR:-$ROOT/target}/release/slipway-agent}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}; install them (apt-get install -y ${need[*]})"
  say "Installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi
if [[ ! -x $BIN ]]; then
  say "Building slipway-agent (release)"
  (cd "$ROOT" && cargo build --release -p slipway-agent)
fi
# The browser-like HTTP/2 client of the upgrade row (reconnects after GOAWAY, resends only
# requests the server did not process).
H2_RETRY_LOAD=${H2_RETRY_LOAD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/h2_retry_load}
if [[ ${EDGE:-1} == 1 && ! -x $H2_RETRY_LOAD ]]; then
  say "Building the h2_retry_load example (release)"
  (cd "$ROOT" && CARGO_INCREMENTAL=0 cargo build --release -p slipway-proxy --example h2_retry_load)
fi

WORK=$(mktemp -d /tmp/slipway-bench-proxy.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n ${KEEP_WORK:-} ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# Free ports on 127.0.0.1.
read -r UP HA_HTTP HA_TCP SW_HTTP SW_TCP HA_TLS SW_PLAIN SW_TLS < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

say "Upstream: nginx on 127.0.0.1:$UP (1 worker, keep-alive)"
start_upstream "$WORK" "$UP"

say "Certificate for localhost (both proxies serve the same one)"
self_signed "$WORK" "DNS:localhost,DNS:*.bench.test"

say "haproxy: HTTP on :$HA_HTTP, TCP on :$HA_TCP, HTTPS on :$HA_TLS ($PROXY_THREADS threads)"
haproxy_config "$WORK" "$PROXY_THREADS" "$UP" "$HA_TLS"
cat >>"$WORK/haproxy.cfg" <<CONF
frontend fe_http
  mode http
  bind 127.0.0.1:$HA_HTTP
  option forwardfor
  default_backend be_http
frontend fe_tcp
  mode tcp
  bind 127.0.0.1:$HA_TCP
  default_backend be_tcp
backend be_tcp
  mode tcp
  server up 127.0.0.1:$UP
CONF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

say "slipway-agent proxy: HTTP on :$SW_HTTP, TCP on :$SW_TCP ($PROXY_THREADS threads; routes from its state file)"
# routes EXTRA_HOSTS: the two port routes, and the HTTPS route for localhost plus EXTRA_HOSTS
# other apps' hosts (so the host table holds EXTRA_HOSTS+1 entries).
routes() {
  local tls="\"tls\": {\"cert\": \"$WORK/cert.pem\", \"key\": \"$WORK/key.pem\"}, \"redirect_https\": false"
  echo '{"version": 1, "routes": ['
  echo "  {\"app\": \"bench-http\", \"listen\": $SW_HTTP, \"protocol\": \"http\", \"upstream\": {\"id\": \"nginx\", \"addr\": \"127.0.0.1:$UP\"}},"
  echo "  {\"app\": \"bench-tcp\", \"listen\": $SW_TCP, \"protocol\": \"tcp\", \"upstream\": {\"id\": \"nginx\", \"addr\": \"127.0.0.1:$UP\"}},"
  for i in $(seq "$1"); do
    echo "  {\"app\": \"extra-$i\", \"listen\": 0, \"protocol\": \"http\", \"upstream\": {\"id\": \"nginx\", \"addr\": \"127.0.0.1:$UP\"}, \"edge\": {\"hosts\": [\"h$i.bench.test\"], $tls}},"
  done
  echo "  {\"app\": \"bench-edge\", \"listen\": 0, \"protocol\": \"http\", \"upstream\": {\"id\": \"nginx\", \"addr\": \"127.0.0.1:$UP\"}, \"edge\": {\"hosts\": [\"localhost\"], $tls}}"
  echo ']}'
}
start_slipway() {
  TOKIO_WORKER_THREADS=$PROXY_THREADS SLIPWAY_LOG=warn "$BIN" proxy --control-socket "$WORK/proxy.sock" \
    --state "$WORK/routes.json" --bind 127.0.0.1 --http-workers "$PROXY_THREADS" \
    --http-port "$SW_PLAIN" --https-port "$SW_TLS" >>"$WORK/proxy.log" 2>&1 &
  SW_PID=$!
  PIDS+=($SW_PID)
}
routes 0 >"$WORK/routes.json"
start_slipway

for port in $UP $HA_HTTP $HA_TCP $SW_HTTP $SW_TCP $SW_PLAIN; do
  for _ in $(seq 100); do
    # Host: localhost, the one host the shared listener routes (others get its 404).
    curl -fsS -o /dev/null -H "Host: localhost" "http://127.0.0.1:$port/" 2>/dev/null && continue 2
    sleep 0.05
  done
  cat "$WORK/proxy.log" "$WORK/haproxy.log" >&2
  die "nothing answers on 127.0.0.1:$port"
done

# run NAME PORT -> "rps p99_ms non2xx errors"
run() {
  local out rps p99 non2xx errs
  wrk -t1 -c4 -d1s "http://127.0.0.1:$2/" >/dev/null 2>&1 || true # warm-up, pools filled
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$2/")
  echo "$out" >"$WORK/wrk-$1.txt"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out"); errs=${errs:-0}
  echo "$rps $p99 $non2xx $errs"
}

say "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, one run each"
declare -A R
for target in "upstream-direct:$UP" "haproxy-http:$HA_HTTP" "slipway-http:$SW_HTTP" \
  "haproxy-tcp:$HA_TCP" "slipway-tcp:$SW_TCP"; do
  R[${target%%:*}]=$(run "${target%%:*}" "${target##*:}")
done

printf '\n%-16s %12s %10s %8s %8s\n' target req/s p99_ms non2xx errors
for t in upstream-direct haproxy-http slipway-http haproxy-tcp slipway-tcp; do
  read -r rps p99 non2xx errs <<<"${R[$t]}"
  printf '%-16s %12s %10s %8s %8s\n' "$t" "$rps" "$p99" "$non2xx" "$errs"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
for proto in http tcp; do
  read -r s_rps s_p99 _ _ <<<"${R[slipway-$proto]}"
  read -r h_rps h_p99 _ _ <<<"${R[haproxy-$proto]}"
  printf '%s: slipway/haproxy throughput %sx (goal >= 0.90), p99 %sx\n' \
    "${proto^^}" "$(ratio "$s_rps" "$h_rps")" "$(ratio "$s_p99" "$h_p99")"
done

[[ ${EDGE:-1} == 1 ]] || exit 0

# https NAME PORT -> "rps p99_ms errors" (wrk, HTTP/1.1 over TLS, keep-alive)
https() {
  local out
  wrk -t1 -c4 -d1s "https://localhost:$2/" >/dev/null 2>&1 || true
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "https://localhost:$2/")
  echo "$out" >"$WORK/wrk-$1.txt"
  awk '/^Requests\/sec:/ {r=$2} $1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p=v}
       /Socket errors/ {gsub(",",""); e=$4+$6+$8+$10} /Non-2xx/ {e+=$NF}
       END {printf "%s %.2f %d\n", r, p, e}' <<<"$out"
}
# h2 NAME PORT -> "rps p99_ms errors" (h2load: CONNECTIONS clients, 10 streams each)
H2_REQUESTS=${H2_REQUESTS:-200000}
h2() {
  local out
  out=$(h2load -n "$H2_REQUESTS" -c "$CONNECTIONS" -m 10 -t "$WRK_THREADS" "https://localhost:$2/" 2>&1)
  echo "$out" >"$WORK/h2load-$1.txt"
  python3 - "$WORK/h2load-$1.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = re.search(r"finished in [^,]+, ([0-9.]+) req/s", t)
ok = re.search(r"requests: (\d+) total, (\d+) started, \d+ done, (\d+) succeeded", t)
# h2load has no p99: the request-time line gives min/max/mean/sd; report mean+2sd as a p99 stand-in.
m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", t)
def ms(v):
    return float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-2]) if v.endswith("ms") else float(v[:-1]) * 1000
p = ms(m.group(3)) + 2 * ms(m.group(4)) if m else 0
# Failed: requests sent and not answered. h2load opens no new connection after a GOAWAY (a
# browser does), so requests it never sent are reported apart, not as failures.
total, started, done = (int(ok.group(i)) for i in (1, 2, 3)) if ok else (0, 0, 0)
if total > started:
    print("h2load sent %d of %d requests (no reconnect after GOAWAY)" % (started, total), file=sys.stderr)
print(rps.group(1) if rps else 0, "%.2f" % p, started - done if ok else -1)
PY
}

say "Edge: HTTPS (same certificate), wrk for HTTP/1.1, h2load for HTTP/2"
declare -A E
E[haproxy-h1]=$(https haproxy-h1 "$HA_TLS")
E[slipway-h1]=$(https slipway-h1 "$SW_TLS")
E[haproxy-h2]=$(h2 haproxy-h2 "$HA_TLS")
E[slipway-h2]=$(h2 slipway-h2 "$SW_TLS")

# restart_with N: the proxy restarted with the HTTPS route plus N other hosts' routes.
restart_with() {
  kill "$SW_PID"; wait "$SW_PID" 2>/dev/null || true
  routes "$1" >"$WORK/routes.json"
  start_slipway
  for _ in $(seq 100); do curl -fsSk -o /dev/null "https://localhost:$SW_TLS/" 2>/dev/null && break; sleep 0.05; done
}
# A 5% difference is within one run's noise here, so 1 host and 100 hosts alternate, twice
# each, each on a fresh proxy process, and the ratio is of the sums (the 1-host row above,
# measured first on a warmer process, is not part of it).
say "Edge: the same route with 100 hosts in the table against 1 (alternating, 2 runs each)"
for round in a b; do
  restart_with 0
  E[slipway-h1-1$round]=$(https "slipway-h1-1$round" "$SW_TLS")
  restart_with 99
  E[slipway-h1-100$round]=$(https "slipway-h1-100$round" "$SW_TLS")
done

# h2r NAME PORT -> "rps p99_ms failed" (h2_retry_load: CONNECTIONS clients, 10 streams each)
h2r() {
  local out
  out=$("$H2_RETRY_LOAD" -n "$H2_REQUESTS" -c "$CONNECTIONS" -m 10 --ca "$WORK/cert.pem" \
    --url "https://localhost:$2/" 2>&1)
  echo "$out" >"$WORK/h2r-$1.txt"
  grep -v '^result ' <<<"$out" | sed 's/^/  /' >&2
  awk '$1 == "result" {print $2, $3, $4}' <<<"$out"
}

say "Edge: proxy upgrade (SIGUSR2 takeover) in the middle of an HTTP/2 run (browser-like client)"
( sleep 1; kill -USR2 "$SW_PID" ) &
E[slipway-h2-upgrade]=$(h2r slipway-h2-upgrade "$SW_TLS")
SW_PID=$(pgrep -n -f -- "--control-socket $WORK/proxy.sock" || echo "$SW_PID")
PIDS+=($SW_PID)

printf '\n%-20s %12s %10s %8s\n' edge req/s p99_ms errors
for t in haproxy-h1 slipway-h1 slipway-h1-1a slipway-h1-100a slipway-h1-1b slipway-h1-100b \
  haproxy-h2 slipway-h2 slipway-h2-upgrade; do
  read -r rps p99 errs <<<"${E[$t]}"
  printf '%-20s %12s %10s %8s\n' "$t" "$rps" "$p99" "$errs"
done
echo
for v in h1 h2; do
  read -r s_rps s_p99 _ <<<"${E[slipway-$v]}"
  read -r h_rps h_p99 _ <<<"${E[haproxy-$v]}"
  printf 'HTTPS %s: slipway/haproxy throughput %sx (goal >= 1.0), p99 %sx (goal <= 1.2)\n' \
    "$v" "$(ratio "$s_rps" "$h_rps")" "$(ratio "$s_p99" "$h_p99")"
done
read -r one_a _ _ <<<"${E[slipway-h1-1a]}"
read -r one_b _ _ <<<"${E[slipway-h1-1b]}"
read -r hundred_a _ _ <<<"${E[slipway-h1-100a]}"
read -r hundred_b _ _ <<<"${E[slipway-h1-100b]}"
printf '100 hosts vs 1: throughput %sx (goal >= 0.95; means of 2 alternating runs: %sx, %sx)\n' \
  "$(ratio "$(awk -v a="$hundred_a" -v b="$hundred_b" 'BEGIN {print a + b}')" \
    "$(awk -v a="$one_a" -v b="$one_b" 'BEGIN {print a + b}')")" \
  "$(ratio "$hundred_a" "$one_a")" "$(ratio "$hundred_b" "$one_b")"
read -r _ _ up_errs <<<"${E[slipway-h2-upgrade]}"
printf 'upgrade mid-run: %s failed requests (goal 0)\n' "$up_errs"
