#!/usr/bin/env bash
# Builds a full Debian 12 guest from Debian packages only: the minimal
# kernel with what systemd needs (debian.fragment) and an ext4 root file
# system made by debootstrap, booted from virtio-blk as root=/dev/vda.
#
#   $OUT/bzImage, $OUT/vmlinux   kernel (guest/build.sh with debian.fragment)
#   $OUT/rootfs.ext4             Debian 12 (systemd, getty on ttyS0, root
#                                without password on the serial console)
#
# Usage: guest/build-debian.sh [OUT]   (default: .cache/guest-debian)
# Env:   ROOTFS_SIZE (default 2G), MIRROR (default http://deb.debian.org/debian)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/guest-debian}
SIZE=${ROOTFS_SIZE:-2G}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
say() { printf '[guest/build-debian] %s\n' "$*" >&2; }
[[ $(id -u) == 0 ]] || { say "debootstrap needs root"; exit 1; }
for p in debootstrap e2fsprogs; do
  dpkg -s "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p" >&2
done
mkdir -p "$OUT"
FRAGMENTS="govisor.fragment debian.fragment" "$HERE/build.sh" "$OUT"

if [[ -f $OUT/rootfs.ext4 ]]; then
  say "up to date: $OUT/rootfs.ext4 (delete it to rebuild)"
  exit 0
fi
WORK=$OUT/.rootfs
rm -rf "$WORK"
say "debootstrap bookworm into $WORK"
debootstrap --variant=minbase --include=systemd-sysv,udev,iproute2,procps bookworm "$WORK" "$MIRROR" >&2
echo govisor-debian > "$WORK/etc/hostname"
printf '/dev/vda / ext4 defaults 0 1\n' > "$WORK/etc/fstab"
# Root logs in on the serial console without a password (a test guest).
chroot "$WORK" passwd -d root >&2
# The guest powers off on the first boot's `poweroff` from tests; nothing
# to configure for the serial getty: systemd starts one on the console.
say "making $SIZE ext4 image"
mkfs.ext4 -q -F -L govisor-root -d "$WORK" "$OUT/rootfs.ext4.tmp" "$SIZE"
mv "$OUT/rootfs.ext4.tmp" "$OUT/rootfs.ext4"
rm -rf "$WORK"
say "done: $OUT"
