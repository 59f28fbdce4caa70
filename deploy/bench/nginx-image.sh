#!/usr/bin/env bash
# Builds a real nginx image from Debian packages once and caches it as an OCI layout:
#   mmdebstrap --variant=minbase --include=nginx-light bookworm -> rootfs tarball
#   umoci: one layer + config (CMD nginx -g 'daemon off;', port 80)
# The tarball carries /dev/console and friends, as real base images do.
#
# Usage: deploy/bench/nginx-image.sh [CACHE_DIR]   (default /var/cache/slipway-bench)
# Prints the OCI layout reference (`DIR:nginx`). Needs root, mmdebstrap, umoci, a Debian mirror.
set -euo pipefail

cache=${1:-/var/cache/slipway-bench}
layout="$cache/nginx-oci"
if [ -f "$layout/index.json" ] && umoci stat --image "$layout:nginx" >/dev/null 2>&1; then
  echo "$layout:nginx"
  exit 0
fi
for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y mmdebstrap umoci" >&2; exit 1; }
done
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "nginx-image: mmdebstrap bookworm minbase + nginx-light (a few minutes, once) ..." >&2
mmdebstrap --quiet --variant=minbase --include=nginx-light bookworm "$work/rootfs.tar" >&2
umoci init --layout "$work/oci"
umoci new --image "$work/oci:nginx"
umoci raw add-layer --image "$work/oci:nginx" "$work/rootfs.tar"
umoci config --image "$work/oci:nginx" \
  --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
  --config.exposedports 80/tcp --config.stopsignal SIGQUIT
rm -rf "$layout"
mv "$work/oci" "$layout"
echo "$layout:nginx"
