#!/usr/bin/env bash
# Installs the Debian packages a govisor task needs (only those missing).
#   deps.sh guest   packages to build the test guests
#   deps.sh lab     QEMU 10 (bookworm-backports) and what a lab host is built from
#   deps.sh labqemu what scripts/lab-qemu.sh builds the lab's QEMU with
#   deps.sh test    guest + lab + the peers the interop tests and benchmarks run
#   deps.sh libvirt + libvirt, the peer bench/api compares the agent with
#
# Why bookworm-backports: a lab host (internal/lab) is a QEMU TCG VM with an
# emulated SVM CPU whose kernel loads kvm_amd. Debian 12's own QEMU 7.2 froze
# on every long run there (MTTCG: vCPUs looping on a stale int3 left by
# kernel text patching); QEMU 10.0 from bookworm-backports with
# thread=multi never did. The suite is added from the Debian mirror the
# machine already uses.
set -euo pipefail
guest=(linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev cpio busybox-static)
# What scripts/firmware.sh builds the BIOS- and UEFI-boot test disks with: a
# partition table (sfdisk), a FAT file system (mkfs.fat, mtools) and SYSLINUX,
# whose installer writes to a FAT image through mtools, with no loop device.
# OVMF and GRUB (grub-mkimage) it only unpacks (apt-get download, dpkg -x).
guest+=(fdisk dosfstools mtools syslinux syslinux-common)
# What scripts/debian-disk.sh builds the Debian test disks with: debootstrap
# for the root file system, GRUB's BIOS and UEFI images and modules
# (grub-pc-bin, grub-efi-amd64-bin: images only, nothing is installed on the
# machine's own boot disk), qemu-img for the compressed qcow2.
guest+=(debootstrap grub-pc-bin grub-efi-amd64-bin qemu-utils)
# libwrap0, libtirpc3: the libraries of the NFS server a lab's storage host
# runs (its programs come from nfs-kernel-server via apt-get download).
lab=(qemu-system-x86 qemu-utils e2fsprogs iproute2 cpio busybox-static libwrap0 libtirpc3)
# What scripts/lab-qemu.sh builds the lab hosts' own QEMU with (Debian's
# QEMU source plus one fix; why there): QEMU 10 needs meson >= 1.5 and
# python3-pycotap, both from bookworm-backports (labqemu_bpo).
labqemu=(build-essential curl xz-utils patch pkg-config python3-venv ninja-build libglib2.0-dev libfdt-dev zlib1g-dev)
labqemu_bpo=(meson python3-pycotap)
want=()
backports=0
bpo=()
case "${1:-test}" in
  guest) want=("${guest[@]}") ;;
  lab) want=("${lab[@]}"); backports=1 ;;
  labqemu) want=("${labqemu[@]}"); backports=1; bpo=("${labqemu_bpo[@]}") ;;
  # chromium: the web console's end-to-end tests (internal/webui) drive
  # Debian's browser headless with playwright-core; no browser is downloaded.
  test) want=("${guest[@]}" "${lab[@]}" acpica-tools time chromium); backports=1 ;;
  libvirt) want=(qemu-system-x86 libvirt-daemon-system libvirt-clients); backports=1 ;;
  *) echo "usage: $0 guest|lab|test|libvirt" >&2; exit 2 ;;
esac
say() { printf '[deps] %s\n' "$*" >&2; }
need_root() { [[ $(id -u) == 0 ]] || { say "need root to $*"; exit 1; }; }

# qemu_ok: the installed QEMU is 10 or newer.
qemu_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || return 1
  v=${v#*:}
  [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} >= 10))
}

add_backports() {
  local list=/etc/apt/sources.list.d/govisor-bookworm-backports.sources mirror
  [[ -f $list ]] && return 0
  grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  need_root "add bookworm-backports"
  # The first Debian (non-security) mirror in the machine's sources.
  mirror=$(grep -rhs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -o -E 'https?://[^ ]+' | grep -v -E 'security|nodesource|google' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  say "adding bookworm-backports from $mirror (QEMU 10: Debian 12's QEMU 7.2 freezes lab hosts)"
  cat > "$list" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
}

# The web console (web/) builds with vite 7, which needs node 20.19 or newer
# (Debian 12's nodejs is 18): say so early rather than in a failed test.
if [[ ${1:-test} == test ]]; then
  nodev=$(node -p 'process.versions.node' 2>/dev/null || true)
  IFS=. read -r nmaj nmin _ <<<"${nodev:-0.0.0}"
  if ((nmaj < 20 || (nmaj == 20 && nmin < 19))); then
    say "node ${nodev:-(none)}: the web console's tests (internal/webui) need node >= 20.19 and npm"
  fi
fi

missing=()
for p in "${want[@]}"; do
  [[ $p == qemu-system-x86 ]] && ((backports)) && continue
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((backports)) && ! qemu_ok; then
  need_root "install QEMU 10"
  add_backports
  say "installing qemu-system-x86 from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-x86 qemu-utils >&2
fi
# Packages only bookworm-backports has new enough (meson for QEMU 10).
bpo_missing=()
for p in "${bpo[@]}"; do
  v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)
  # bookworm's own meson (1.0) is installed but too old for QEMU 10.
  [[ -n $v ]] && { [[ $p != meson ]] || dpkg --compare-versions "$v" ge 1.5; } && continue
  bpo_missing+=("$p")
done
if ((${#bpo_missing[@]})); then
  need_root "install ${bpo_missing[*]}"
  add_backports
  say "installing from bookworm-backports: ${bpo_missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t bookworm-backports "${bpo_missing[@]}" >&2
fi
((${#missing[@]} == 0)) && exit 0
say "installing: ${missing[*]}"
need_root "install: ${missing[*]}"
apt-cache show "${missing[0]}" >/dev/null 2>&1 || apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
