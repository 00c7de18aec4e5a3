#!/usr/bin/env bash
# Installs the Debian packages a govisor task needs (only those missing).
#   deps.sh guest   packages to build the test guests
#   deps.sh test    + the peers the interop tests and benchmarks run (QEMU, qemu-img)
#   deps.sh libvirt + libvirt, the peer bench/api compares the agent with
set -euo pipefail
want=()
case "${1:-test}" in
  guest) want=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio busybox-static) ;;
  test)  want=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio busybox-static
               qemu-system-x86 qemu-utils e2fsprogs acpica-tools iproute2 time) ;;
  libvirt) want=(qemu-system-x86 libvirt-daemon-system libvirt-clients) ;;
  *) echo "usage: $0 guest|test|libvirt" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
((${#missing[@]} == 0)) && exit 0
echo "[deps] installing: ${missing[*]}" >&2
if [[ $(id -u) != 0 ]]; then echo "[deps] need root to install: ${missing[*]}" >&2; exit 1; fi
apt-cache show "${missing[0]}" >/dev/null 2>&1 || apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
