# Shared by deploy/quickstart and deploy/bench/*: one Slipway host on this machine — a local
# registry, `slipway-agent proxy` and `slipway-agent run` — under a temp dir, cleaned up on exit.
# Source it, then call: host_setup (= host_prepare; host_start); host_push TAG TEXT;
# host_release SEQ IMAGE; host_wait_for TEXT SECS.
# Settings (env): PORT (proxy listen port for the app), APP (app name), APP_EXTRA (extra app.toml),
# CNI_EXTRA (extra [runtime.cni] lines, e.g. "masquerade = false"), SLIPWAY_PROFILE (cargo
# profile to build and run, default release).

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# free_port FROM: the first TCP port at or above FROM that nothing listens on.
free_port() {
  local p=$1
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}
PORT=${PORT:-$(free_port $((20000 + RANDOM % 20000)))}
APP=${APP:-web}
PROFILE=${SLIPWAY_PROFILE:-release}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
HOST_PIDS=()

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

host_build() {
  [ "$(id -u)" -eq 0 ] || die "run as root: containers need runc, network namespaces and overlay mounts"
  say "Installing Debian packages (runc, docker-registry, busybox-static, CNI plugins, wrk...)"
  "$ROOT/deploy/install-deps"
  say "Building Slipway ($PROFILE)"
  (cd "$ROOT" && cargo build --profile "$PROFILE" --quiet -p slipway-agent -p slipway-controller -p slipway-tests --bins)
}

# host_conntrack_room N: a load through the proxy to busybox httpd (which closes every
# connection) leaves a TIME_WAIT conntrack entry per request for 120 s; at about 5,000 req/s a
# run outgrows the kernel's default table (262,144 here) and the kernel drops new connections
# ("nf_conntrack: table full, dropping packet" in dmesg), which the bench would count as
# failed requests. Raises net.netfilter.nf_conntrack_max to at least N while the script
# runs; host_cleanup puts the old value back.
host_conntrack_room() {
  local f=/proc/sys/net/netfilter/nf_conntrack_max
  [ -w "$f" ] || return 0
  CONNTRACK_MAX_WAS=$(cat "$f")
  if [ "$CONNTRACK_MAX_WAS" -lt "$1" ]; then echo "$1" > "$f"; fi
}

host_cleanup() {
  set +e
  if [ -n "${CONNTRACK_MAX_WAS:-}" ]; then
    echo "$CONNTRACK_MAX_WAS" > /proc/sys/net/netfilter/nf_conntrack_max
  fi
  if [ -n "${AGENT_PID:-}" ] && kill -0 "$AGENT_PID" 2>/dev/null && [ -f "$WORK/releases/$APP.json" ]; then
    rm -f "$WORK/releases/$APP.json"   # the agent removes the app: unroute, discard containers
    for _ in $(seq 1 100); do
      [ -z "$(runc --root "$WORK/runc" list -q 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for p in "${HOST_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  # Belt and braces: nothing of ours survives the script.
  for c in $(runc --root "$WORK/runc" list -q 2>/dev/null); do runc --root "$WORK/runc" delete --force "$c"; done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^slipway-[0-9a-f]{6}-$APP-[0-9]"); do ip netns del "$ns"; done
  ip link del "$BRIDGE" 2>/dev/null
  nft delete table ip "slipway_nat_${BRIDGE//[^A-Za-z0-9]/_}" 2>/dev/null   # the runtime's egress NAT
  grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  [ -f "$WORK/registry/registry.pid" ] && kill "$(cat "$WORK/registry/registry.pid")" 2>/dev/null
  if [ -n "${SLIPWAY_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

# Starts registry, proxy and agent; defines WORK, REG, BRIDGE.
host_setup() {
  host_prepare
  host_start
}

# Starts the registry and writes keys, app.toml and agent.toml; defines WORK, REG, BRIDGE.
host_prepare() {
  WORK=$(mktemp -d /tmp/slipway-host.XXXXXX)
  BRIDGE=${BRIDGE:-sw$$}
  BRIDGE=${BRIDGE:0:15}
  trap host_cleanup EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$WORK/registry" "$WORK/releases"
  say "Starting a local OCI registry"
  REG=$("$ROOT/deploy/registry" --dir "$WORK/registry")
  echo "registry at $REG"
  "$BIN/slipway" keygen --out "$WORK/keys" >/dev/null 2>&1
  "$BIN/slipway" trust init --key "$WORK/keys/release.pub" --out "$WORK/trust.toml" >/dev/null
  cat > "$WORK/app.toml" <<TOML
name = "$APP"
image = "$REG/demo/$APP"
listen = $PORT
container_port = 80
stop_grace = "${STOP_GRACE:-2s}"   # busybox httpd as PID 1 ignores SIGTERM: do not wait 10 s for it
${APP_EXTRA:-}
TOML
  cat > "$WORK/agent.toml" <<TOML
state_dir = "$WORK/state"
trust = "$WORK/trust.toml"
releases_dir = "$WORK/releases"
proxy_socket = "$WORK/proxy.sock"

[registry]
insecure = ["$REG"]

[runtime]
state_dir = "$WORK/state/containers"
runc_root = "$WORK/runc"

[runtime.cni]
bridge = "$BRIDGE"
subnet = "${SUBNET:-10.231.0.0/24}"
${CNI_EXTRA:-}
TOML
}

# Starts the proxy and the agent (on $WORK/agent.toml, which the caller may have extended).
host_start() {
  say "Starting the proxy and the agent"
  "$BIN/slipway-agent" proxy --control-socket "$WORK/proxy.sock" --state "$WORK/routes.json" --bind 127.0.0.1 \
    >"$WORK/proxy.log" 2>&1 &
  HOST_PIDS+=($!)
  "$BIN/slipway-agent" run --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
  AGENT_PID=$!
  HOST_PIDS+=($AGENT_PID)
}

# host_push TAG TEXT -> prints REG/demo/APP@sha256:...
host_push() { "$BIN/slipway-demo-image" "$REG" "demo/$APP" "$1" "$2"; }

# host_release SEQ IMAGE: signs and drops the release file atomically.
host_release() {
  host_sign "$1" "$2"
  host_publish
}

# host_sign SEQ IMAGE: signs the release next to the releases dir, not yet published.
host_sign() {
  "$BIN/slipway" release sign --key "$WORK/keys/release.key" --app-spec "$WORK/app.toml" \
    --image "$2" --seq "$1" --expires 1h --out "$WORK/releases/.$APP.json.tmp"
}

# host_publish: the signed release becomes the app's release file (one rename).
host_publish() {
  mv "$WORK/releases/.$APP.json.tmp" "$WORK/releases/$APP.json"
}

# host_wait_for TEXT TIMEOUT_S: until GET / through the proxy contains TEXT.
host_wait_for() {
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    curl -fsS --max-time 1 "http://127.0.0.1:$PORT/" 2>/dev/null | grep -q "$1" && return 0
    sleep 0.01
  done
  echo "--- agent log"; tail -30 "$WORK/agent.log"; echo "--- proxy log"; tail -10 "$WORK/proxy.log"
  die "timed out waiting for '$1' on 127.0.0.1:$PORT"
}

# wrk_failed FILE: non-2xx plus socket errors in a wrk report.
wrk_failed() {
  local non2xx sockerr
  non2xx=$(awk -F': ' '/Non-2xx/ {print $2}' "$1")
  sockerr=$(awk '/Socket errors/ {gsub(",", ""); print $4+$6+$8+$10}' "$1")
  echo $(( ${non2xx:-0} + ${sockerr:-0} ))
}
