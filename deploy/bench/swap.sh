#!/usr/bin/env bash
# Benchmark: zero downtime and swap latency of a blue-green deploy on one host.
#  1. steady state: wrk against the proxy for STEADY_SECONDS, nothing deploying;
#  2. wrk again while SWAPS consecutive releases alternate between two cached images; each swap
#     is timed from "release file written" to "new version answering through the proxy".
# Prints requests, failures (goal 0), p99 during swaps vs steady (goal <= 2x) and swap latency
# (goal: median <= 250 ms with the image cached). Loopback only; bounded in count and time.
# Run as root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
APP=bench
SUBNET=10.232.0.0/24
SWAPS=${SWAPS:-20}
STEADY_SECONDS=${STEADY_SECONDS:-10}
WRK_ARGS=(-t2 -c8 --latency)   # busybox httpd listens with a backlog of 9: more in-flight connections than that overflow it
APP_EXTRA='[swap]
drain_timeout = "5s"
bake = "300ms"'
. "$ROOT/deploy/lib/host.sh"

host_build
host_setup
host_conntrack_room 1048576
A=$(host_push a "version A")
B=$(host_push b "version B")
host_release 1 "$A"
host_wait_for "version A" 120
# Warm B's layers into the store with one swap that is not measured.
host_release 2 "$B"
host_wait_for "version B" 60
sleep 1

say "Steady state: ${STEADY_SECONDS}s"
wrk "${WRK_ARGS[@]}" -d"${STEADY_SECONDS}s" "http://127.0.0.1:$PORT/" >"$WORK/steady.txt"

say "$SWAPS swaps under load"
wrk "${WRK_ARGS[@]}" -d300s "http://127.0.0.1:$PORT/" >"$WORK/swaps.txt" &
WRK_PID=$!
sleep 1
lat=()
for i in $(seq 1 "$SWAPS"); do
  seq=$((i + 2))
  if [ $((i % 2)) -eq 1 ]; then img=$A; text="version A"; else img=$B; text="version B"; fi
  # Timed from the release file written: signing is the operator's step, before it.
  host_sign "$seq" "$img"
  t0=$(date +%s%N)
  host_publish
  host_wait_for "$text" 60
  t1=$(date +%s%N)
  lat+=($(( (t1 - t0) / 1000000 )))
  # Next swap only once the previous one is fully done: the agent logged the old container
  # (the previous seq's) discarded, which is after its runc delete, CNI DEL and netns and
  # rootfs removal. (`runc list` shows one container before the discard has finished.)
  for _ in $(seq 1 200); do
    grep "container discarded" "$WORK/agent.log" | grep -q "$APP-$((seq - 1))-" && break
    sleep 0.05
  done
done
sleep 1
kill -INT "$WRK_PID"; wait "$WRK_PID" || true

req() { awk '/requests in/ {print $1}' "$1"; }
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
p99() { awk '/ 99%/ {print $2}' "$1"; }
sorted=$(printf '%s\n' "${lat[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(echo "$sorted" | tail -1)
min=$(echo "$sorted" | head -1)
say "Results"
printf '  steady:      %s requests, %s req/s, p99 %s, failed %s\n' "$(req "$WORK/steady.txt")" "$(rps "$WORK/steady.txt")" "$(p99 "$WORK/steady.txt")" "$(wrk_failed "$WORK/steady.txt")"
printf '  %2d swaps:    %s requests, %s req/s, p99 %s, failed %s\n' "$SWAPS" "$(req "$WORK/swaps.txt")" "$(rps "$WORK/swaps.txt")" "$(p99 "$WORK/swaps.txt")" "$(wrk_failed "$WORK/swaps.txt")"
printf '  swap latency (release written -> new version served): min %s ms, median %s ms, max %s ms\n' "$min" "$median" "$max"
[ -r /proc/sys/net/netfilter/nf_conntrack_count ] &&
  printf '  conntrack:   %s of %s entries in use\n' "$(cat /proc/sys/net/netfilter/nf_conntrack_count)" "$(cat /proc/sys/net/netfilter/nf_conntrack_max)"
