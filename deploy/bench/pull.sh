#!/usr/bin/env bash
# Benchmark: cold `slipway-agent pull` (pull + verify + unpack) against
# `skopeo copy docker://... oci:DIR` + `umoci unpack`, on the same image from the same local
# docker-registry; then an update that differs in one layer (bytes fetched must equal that
# layer's size). Then a real nginx image (Debian bookworm minbase + nginx-light, built once
# by deploy/bench/nginx-image.sh and cached under /var/cache/slipway-bench/): cold pull+unpack
# against skopeo+umoci (goal <= 0.5x) with the agent's peak RSS (/usr/bin/time -v). Not a
# test: prints figures.
#
# Usage: deploy/bench/pull.sh [--rounds N] [--keep]
#   --rounds N  timed rounds per tool, median reported (default 3)
#   --keep      keep the work dir (printed) instead of removing it
# Needs: docker-registry skopeo umoci tar curl time mmdebstrap (Debian packages), cargo.
set -euo pipefail

rounds=3 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")/../.." && pwd)
for tool in skopeo umoci docker-registry tar curl /usr/bin/time mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y skopeo umoci docker-registry tar curl time mmdebstrap" >&2; exit 1; }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
echo "building slipway-agent (release) ..." >&2
(cd "$here" && cargo build --release -q -p slipway-agent)
agent="$CARGO_TARGET_DIR/release/slipway-agent"

work=$(mktemp -d /tmp/slipway-bench-pull.XXXXXX)
cleanup() {
  [ -f "$work/reg/registry.pid" ] && kill "$(cat "$work/reg/registry.pid")" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

reg=$("$here/deploy/registry" --dir "$work/reg" 2>/dev/null)
echo "registry on $reg" >&2

# --- a realistic image: 6 layers, ~200 MB uncompressed, mixed file sizes and compressibility
mklayer() { # DIR SEED MB_RANDOM MB_TEXT SMALL_FILES
  local dir=$1 seed=$2 mbr=$3 mbt=$4 small=$5 i
  mkdir -p "$dir/data/$seed" "$dir/usr/share/doc/$seed" "$dir/etc/$seed"
  if [ "$mbr" -gt 0 ]; then
    head -c "$((mbr * 1024 * 1024))" /dev/urandom >"$dir/data/$seed/blob.bin"
  fi
  if [ "$mbt" -gt 0 ]; then
    # Compressible text: repeated source-like lines with counters.
    awk -v n="$((mbt * 1024 * 1024 / 64))" -v s="$seed" 'BEGIN { for (i = 0; i < n; i++) printf "fn item_%s_%08d() -> u64 { return %d * 31 + 7; } //\n", s, i, i }' \
      | head -c "$((mbt * 1024 * 1024))" >"$dir/usr/share/doc/$seed/big.txt" || true # awk gets SIGPIPE
  fi
  for i in $(seq 1 "$small"); do
    head -c "$(( (i * 997) % 16384 + 64 ))" /dev/urandom | base64 >"$dir/etc/$seed/f$i.conf"
  done
  ln -sf "../data/$seed/blob.bin" "$dir/etc/$seed/link" 2>/dev/null || true
}

echo "building the image ..." >&2
umoci init --layout "$work/oci"
umoci new --image "$work/oci:base"
prev=base
spec=("base 40 20 400" "libs 30 20 600" "runtime 25 15 300" "app 20 10 800" "assets 10 10 200" "config 1 1 2000")
i=0
for s in "${spec[@]}"; do
  read -r name mbr mbt small <<<"$s"
  mklayer "$work/src/$name" "$name" "$mbr" "$mbt" "$small"
  tar -C "$work/src/$name" --numeric-owner --owner=0 --group=0 -cf "$work/$name.tar" .
  i=$((i + 1))
  umoci raw add-layer --image "$work/oci:$prev" --tag "l$i" "$work/$name.tar"
  prev="l$i"
done
umoci config --image "$work/oci:$prev" --tag v1 --config.cmd /bin/true
# v2: same first five layers, a different sixth ("config") layer.
mklayer "$work/src/config2" "config2" 1 1 2000
tar -C "$work/src/config2" --numeric-owner --owner=0 --group=0 -cf "$work/config2.tar" .
umoci raw add-layer --image "$work/oci:l5" --tag l6b "$work/config2.tar"
umoci config --image "$work/oci:l6b" --tag v2 --config.cmd /bin/true

uncompressed=$(du -cb "$work"/{base,libs,runtime,app,assets,config}.tar | tail -1 | cut -f1)
for tag in v1 v2; do
  skopeo copy -q --dest-tls-verify=false --digestfile "$work/$tag.digest" "oci:$work/oci:$tag" "docker://$reg/bench/app:$tag"
done
d1=$(cat "$work/v1.digest") d2=$(cat "$work/v2.digest")
compressed=$(skopeo inspect --tls-verify=false --raw "docker://$reg/bench/app@$d1" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))' 2>/dev/null || echo "?")
changed_size=$(skopeo inspect --tls-verify=false --raw "docker://$reg/bench/app@$d2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["size"])' 2>/dev/null || echo "?")

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

slip_times=() sk_times=()
for r in $(seq 1 "$rounds"); do
  rm -rf "$work/store" "$work/sk" "$work/bundle"; sync
  t0=$(now)
  "$agent" pull "$reg/bench/app@$d1" --store "$work/store" --insecure-registry "$reg" --json >"$work/pull1.json"
  t1=$(now)
  slip_times+=("$(echo "$t1 - $t0" | bc -l)")
  sync
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$reg/bench/app@$d1" "oci:$work/sk:img"
  umoci unpack --image "$work/sk:img" "$work/bundle" >/dev/null
  t1=$(now)
  sk_times+=("$(echo "$t1 - $t0" | bc -l)")
  echo "round $r: slipway ${slip_times[-1]}s, skopeo+umoci ${sk_times[-1]}s" >&2
done
slip=$(printf '%s\n' "${slip_times[@]}" | median)
sk=$(printf '%s\n' "${sk_times[@]}" | median)
ratio=$(echo "$slip / $sk" | bc -l)

# Update: v2 into the warm store from the last round.
t0=$(now)
"$agent" pull "$reg/bench/app@$d2" --store "$work/store" --insecure-registry "$reg" --json >"$work/pull2.json"
t1=$(now)
upd=$(echo "$t1 - $t0" | bc -l)
read -r fetched_layers layer_bytes total_bytes < <(python3 -c '
import json,sys
r = json.load(open(sys.argv[1]))["report"]
print(r["layers_fetched"], sum(l["size"] for l in r["layers"] if l["fetched"]), r["bytes_fetched"])' "$work/pull2.json")

printf '\n== slipway-agent pull vs skopeo copy + umoci unpack (median of %s rounds)\n' "$rounds"
printf 'image: 6 layers, %s bytes uncompressed, %s bytes compressed\n' "$uncompressed" "$compressed"
printf 'cold pull+unpack: slipway %.2fs, skopeo+umoci %.2fs, ratio %.2fx (goal <= 0.70x)\n' "$slip" "$sk" "$ratio"
printf 'update (one layer differs): %s layer(s) fetched, %s layer bytes (changed layer is %s bytes), %s bytes incl. manifest+config, %.2fs\n' \
  "$fetched_layers" "$layer_bytes" "$changed_size" "$total_bytes" "$upd"
if [ "$layer_bytes" != "$changed_size" ]; then
  echo "FAIL: fetched layer bytes differ from the changed layer's size" >&2
  exit 1
fi

# --- a real image: nginx from Debian packages (one ~30 MB gzip layer with /dev nodes)
nginx_oci=$("$here/deploy/bench/nginx-image.sh")
skopeo copy -q --dest-tls-verify=false --digestfile "$work/nginx.digest" "oci:$nginx_oci" "docker://$reg/bench/nginx:bookworm"
dn=$(cat "$work/nginx.digest")
nginx_compressed=$(skopeo inspect --tls-verify=false --raw "docker://$reg/bench/nginx@$dn" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
nslip_times=() nsk_times=() rss_kb=()
for r in $(seq 1 "$rounds"); do
  rm -rf "$work/nstore" "$work/nsk" "$work/nbundle"; sync
  t0=$(now)
  /usr/bin/time -v -o "$work/ntime.txt" "$agent" pull "$reg/bench/nginx@$dn" --store "$work/nstore" --insecure-registry "$reg" --json >"$work/npull.json"
  t1=$(now)
  nslip_times+=("$(echo "$t1 - $t0" | bc -l)")
  rss_kb+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/ntime.txt")")
  sync
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$reg/bench/nginx@$dn" "oci:$work/nsk:img"
  umoci unpack --image "$work/nsk:img" "$work/nbundle" >/dev/null
  t1=$(now)
  nsk_times+=("$(echo "$t1 - $t0" | bc -l)")
  echo "nginx round $r: slipway ${nslip_times[-1]}s (peak RSS ${rss_kb[-1]} KiB), skopeo+umoci ${nsk_times[-1]}s" >&2
done
nslip=$(printf '%s\n' "${nslip_times[@]}" | median)
nsk=$(printf '%s\n' "${nsk_times[@]}" | median)
nratio=$(echo "$nslip / $nsk" | bc -l)
rss_max=$(printf '%s\n' "${rss_kb[@]}" | sort -n | tail -1)
devices=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["report"]["devices_skipped"])' "$work/npull.json")
test -x "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layer_dirs"][0])' "$work/npull.json")/usr/sbin/nginx" \
  || { echo "FAIL: usr/sbin/nginx missing from the unpacked layer" >&2; exit 1; }

printf '\n== real image: nginx (Debian bookworm minbase + nginx-light), median of %s rounds\n' "$rounds"
printf 'image: %s bytes compressed, %s device nodes skipped\n' "$nginx_compressed" "$devices"
printf 'cold pull+unpack: slipway %.2fs, skopeo+umoci %.2fs, ratio %.2fx (goal <= 0.50x); agent peak RSS %s KiB\n' \
  "$nslip" "$nsk" "$nratio" "$rss_max"
