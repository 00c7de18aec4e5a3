#!/usr/bin/env bash
# Fetches the firmware images govisor boots with --firmware, from Debian
# packages, without installing them (apt-get download + dpkg -x):
#
#   $OUT/bios-256k.bin   SeaBIOS built for QEMU (package seabios)
#   $OUT/syslinux.img    a BIOS-bootable disk: SYSLINUX's MBR, one FAT16
#                        partition with SYSLINUX, $OUT/bzImage and
#                        $OUT/initrd.cpio (the test guest, guest/build.sh),
#                        booted with run="ls /sys/firmware/acpi/tables; nproc"
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

# syslinux_disk: the BIOS-boot test disk. No loop device: the file system
# is made in a file (mkfs.fat), filled through mtools, SYSLINUX installed
# into it through mtools too, then put after the partition table.
syslinux_disk() {
  local img=$OUT/syslinux.img stamp work part
  if [[ ! -f $OUT/bzImage || ! -f $OUT/initrd.cpio ]]; then
    say "no test guest in $OUT (guest/build.sh makes it): skipping syslinux.img"
    return 0
  fi
  stamp=$( (cat "${BASH_SOURCE[0]}" "$OUT/bzImage" "$OUT/initrd.cpio"; dpkg-query -W -f='${Version}' syslinux) | sha256sum | cut -c1-16)
  if [[ -f $img && -f $OUT/.syslinux.stamp && $(cat "$OUT/.syslinux.stamp") == "$stamp" ]]; then
    say "up to date: $img"
    return 0
  fi
  say "building $img"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  part=$work/part.img
  # 16 MiB of FAT16, its BPB counting the 2048 sectors before it (-h), so
  # that SYSLINUX finds its files wherever the partition starts.
  mkfs.fat -C -F 16 -h 2048 -n GOVISOR "$part" 16384 >/dev/null
  cat > "$work/syslinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL bzImage
  INITRD initrd.cpio
  APPEND console=ttyS0 quiet rodata=off run="ls /sys/firmware/acpi/tables; nproc"
CFG
  MTOOLS_SKIP_CHECK=1 mcopy -i "$part" "$OUT/bzImage" "$OUT/initrd.cpio" "$work/syslinux.cfg" ::/
  syslinux --install "$part"
  truncate -s $(((1 + 16) << 20)) "$work/disk.img"
  # One bootable partition of type 0x0e (FAT16, LBA) from sector 2048.
  printf 'label: dos\nlabel-id: 0x676f7673\nstart=2048, type=e, bootable\n' | sfdisk -q "$work/disk.img"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.img" bs=440 count=1 conv=notrunc status=none
  dd if="$part" of="$work/disk.img" bs=1M seek=1 conv=notrunc status=none
  mv "$work/disk.img" "$img"
  echo "$stamp" > "$OUT/.syslinux.stamp"
}

fetch seabios usr/share/seabios/bios-256k.bin
syslinux_disk
