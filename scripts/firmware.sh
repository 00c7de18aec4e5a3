#!/usr/bin/env bash
# Fetches the firmware images govisor boots with --firmware, from Debian
# packages, without installing them (apt-get download + dpkg -x):
#
#   $OUT/bios-256k.bin   SeaBIOS built for QEMU (package seabios)
#
# Usage: scripts/firmware.sh [OUT]   (default: $GOVISOR_CACHE/guest, else .cache/guest:
# the lab puts that folder's files in every lab host's /guest)
# Idempotent: a package is fetched again only when its version changed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
say() { printf '[firmware] %s\n' "$*" >&2; }

# fetch PKG FILE...: unpack PKG's candidate version and copy FILEs (paths
# inside the package) into $OUT.
fetch() {
  local pkg=$1 ver stamp work
  shift
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z $ver || $ver == "(none)" ]]; then
    apt-get update -qq
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
  fi
  stamp=$OUT/.$pkg.version
  local have=1
  for f in "$@"; do [[ -f $OUT/$(basename "$f") ]] || have=0; done
  if ((have)) && [[ -f $stamp && $(cat "$stamp") == "$ver" ]]; then
    say "up to date: $pkg $ver"
    return 0
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  say "fetching $pkg $ver"
  (cd "$work" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1 || apt-get download -q "$pkg=$ver")
  dpkg -x "$work"/*.deb "$work/root"
  for f in "$@"; do
    cp "$work/root/$f" "$OUT/$(basename "$f").tmp"
    mv "$OUT/$(basename "$f").tmp" "$OUT/$(basename "$f")"
  done
  echo "$ver" > "$stamp"
}

fetch seabios usr/share/seabios/bios-256k.bin
