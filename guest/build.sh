#!/usr/bin/env bash
# Builds govisor's test guests from Debian packages only, into a cache folder:
#
#   $OUT/bzImage      minimal kernel (linux-source-6.1 + microvm.config +
#                     govisor.fragment), LZ4 bzImage
#   $OUT/vmlinux      the same kernel as an ELF (PVH note, 64-bit entry)
#   $OUT/initrd.cpio  uncompressed busybox-static initramfs; /init prints
#                     GUEST-READY, runs the kernel option run=CMD, then
#                     powers off (ACPI) or reboots (no ACPI)
#
# Usage: guest/build.sh [OUT]      (default: $GOVISOR_CACHE/guest, else .cache/guest)
# Env:   FRAGMENTS="govisor.fragment debian.fragment" selects the config
#        fragments added to microvm.config (debian.fragment: what systemd needs).
# Idempotent: outputs are rebuilt only when the inputs (this script, the
# config, the patch, the package versions) change.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/guest}
FRAGMENTS=${FRAGMENTS:-govisor.fragment}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$OUT/.work
JOBS=${JOBS:-$(nproc)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export KBUILD_BUILD_TIMESTAMP="@$SOURCE_DATE_EPOCH" KBUILD_BUILD_USER=govisor KBUILD_BUILD_HOST=govisor
say() { printf '[guest/build] %s\n' "$*" >&2; }

"$ROOT/scripts/deps.sh" guest

SRCVER=$(dpkg-query -W -f='${Version}' linux-source-6.1)
BBVER=$(dpkg-query -W -f='${Version}' busybox-static)
STAMP=$(cd "$HERE" && cat build.sh microvm.config $FRAGMENTS kvm_pvm.patch init.sh \
  | sha256sum | cut -c1-16)-$SRCVER-$BBVER
if [[ -f $OUT/.stamp && $(cat "$OUT/.stamp") == "$STAMP" && -f $OUT/bzImage && -f $OUT/initrd.cpio ]]; then
  say "up to date: $OUT"
  exit 0
fi

# Unpack the source once per package version; patch it for kvm_pvm
# (kvm_pvm.patch: int3 self-test, one fwait, user SYSCALL left at CPL3).
SRC=$WORK/linux-$SRCVER
if [[ ! -f $SRC/.ready ]]; then
  say "unpacking linux-source $SRCVER"
  rm -rf "$WORK"/linux-* && mkdir -p "$SRC"
  tar -xf /usr/src/linux-source-6.1.tar.xz -C "$SRC" --strip-components=1
  patch -s -d "$SRC" -p1 --forward < "$HERE/kvm_pvm.patch"
  touch "$SRC/.ready"
fi

OBJ=$WORK/obj
mkdir -p "$OBJ"
(cd "$HERE" && cat microvm.config $FRAGMENTS) > "$OBJ/.config.want"
if ! cmp -s "$OBJ/.config.want" "$OBJ/.config.in" 2>/dev/null; then
  cp "$OBJ/.config.want" "$OBJ/.config"
  cp "$OBJ/.config.want" "$OBJ/.config.in"
  make -s -C "$SRC" O="$OBJ" olddefconfig
fi
say "building the kernel with -j$JOBS (about 6 minutes on 2 cores)"
t0=$(date +%s)
make -s -C "$SRC" O="$OBJ" -j"$JOBS" bzImage
say "kernel built in $(( $(date +%s) - t0 ))s"

IR=$WORK/initramfs
rm -rf "$IR" && mkdir -p "$IR"
install -m 0755 /bin/busybox "$IR/busybox"
install -m 0755 "$HERE/init.sh" "$IR/init"
printf 'proc /proc proc defaults 0 0\nsysfs /sys sysfs defaults 0 0\ndevtmpfs /dev devtmpfs defaults 0 0\n' > "$IR/fstab"
cat > "$IR/list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 1777 0 0
dir /mnt 0755 0 0
dir /etc 0755 0 0
dir /bin 0755 0 0
dir /sbin 0755 0 0
file /bin/busybox $IR/busybox 0755 0 0
slink /bin/sh busybox 0777 0 0
file /etc/fstab $IR/fstab 0644 0 0
file /init $IR/init 0755 0 0
EOF
"$OBJ/usr/gen_init_cpio" -t "$SOURCE_DATE_EPOCH" "$IR/list" > "$OUT/initrd.cpio.tmp"

install -m 0644 "$OBJ/arch/x86/boot/bzImage" "$OUT/bzImage"
install -m 0644 "$OBJ/vmlinux" "$OUT/vmlinux"
install -m 0644 "$OBJ/.config" "$OUT/config"
mv "$OUT/initrd.cpio.tmp" "$OUT/initrd.cpio"
echo "$STAMP" > "$OUT/.stamp"
say "done: $OUT (linux-source $SRCVER, busybox $BBVER)"
