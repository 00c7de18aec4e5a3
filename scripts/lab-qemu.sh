#!/usr/bin/env bash
# Builds the QEMU that runs TCG lab hosts (internal/lab) from the QEMU
# source Debian ships, with one fix of ours (lab/qemu.patch), into a cache
# folder:
#
#   $OUT/qemu/qemu-system-x86_64
#
# Why: a lab host is a TCG VM with an emulated SVM CPU, and govisor's guests
# run nested in it. Debian's QEMU 10.0 (and every release up to 10.2 at
# least) aborts the whole lab host when a nested guest writes CR8 while a
# virtual interrupt is pending: helper_write_crN calls cpu_interrupt(),
# which asserts the big QEMU lock (BQL), and TCG helpers run without it
# ("tcg_handle_interrupt: assertion failed: (bql_locked())"). EDK II's
# interrupt return restores CR8, so about one OVMF boot in four or five
# took the lab down (docs/firmware.md). The patch takes the lock there,
# as the same function already does for the non-nested TPR write.
# The patch also takes the lock around VMRUN's unlocked update of the
# same interrupt_request word, which could lose the lab host's own timer
# interrupt and freeze it (README, "Where the KVM tests run").
#
# Where this machine has /dev/kvm the lab hosts run on KVM, not TCG, and
# nothing is built. The binary links the machine's libraries (glib, libfdt)
# and finds its firmware (SeaBIOS, option ROMs) where Debian's QEMU does.
#
# Usage: scripts/lab-qemu.sh [OUT]   (default: $GOVISOR_CACHE/lab, else .cache/lab)
#        LAB_QEMU_BUILD=1 builds it on a machine with /dev/kvm too.
# Idempotent: rebuilt only when this script or the patch changes. Costs
# about 5 minutes on 2 cores.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/lab}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
say() { printf '[lab/qemu] %s\n' "$*" >&2; }

# Hardware-assisted KVM only (hostcpu.SoftwareKVM): a kvm_pvm /dev/kvm has
# no nested virtualization, so lab hosts run under TCG there.
hardware_kvm() {
  [[ -c /dev/kvm && ! -e /sys/module/kvm_pvm ]] && (exec 3<>/dev/kvm) 2>/dev/null &&
    grep -q -w -E 'vmx|svm' /proc/cpuinfo
}
if [[ -z ${LAB_QEMU_BUILD:-} ]] && hardware_kvm; then
  say "this machine has /dev/kvm: lab hosts run on KVM, Debian's QEMU serves"
  exit 0
fi

"$ROOT/scripts/deps.sh" labqemu

# QEMU's source as Debian ships it (the +ds tarball of the qemu-system-x86
# in bookworm-backports), from the machine's Debian mirror, checked against
# the SHA-256 Debian's signed source index gives for it.
VER=10.0.2+ds
SHA256=0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
PATCH=$ROOT/lab/qemu.patch
STAMP=$( (cat "$0" "$PATCH") | sha256sum | cut -c1-16)
BIN=$OUT/qemu/qemu-system-x86_64
if [[ -x $BIN && -f $OUT/qemu/.stamp && $(cat "$OUT/qemu/.stamp") == "$STAMP" ]]; then
  say "up to date: $BIN (QEMU $VER + lab/qemu.patch)"
  exit 0
fi
mirror=$(grep -rhs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
  grep -o -E 'https?://[^ ]+' | grep -v -E 'security|nodesource|google' | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
W=$OUT/qemu/.work
rm -rf "$W"; mkdir -p "$W"
TARBALL=qemu_$VER.orig.tar.xz
say "fetching $TARBALL from $mirror"
curl -fsS --retry 3 -o "$W/$TARBALL" "${mirror%/}/pool/main/q/qemu/$TARBALL"
echo "$SHA256  $W/$TARBALL" | sha256sum -c --quiet - ||
  { say "$TARBALL does not match its SHA-256 in Debian's source index"; exit 1; }
mkdir -p "$W/src"
tar -xJf "$W/$TARBALL" -C "$W/src" --strip-components=1
(cd "$W/src" && patch -p1 --quiet < "$PATCH")

say "building qemu-system-x86_64 (TCG; the lab host's devices only; no tools, docs or optional libraries)"
start=$SECONDS
mkdir -p "$W/src/build"
# Only the devices a lab host has (internal/lab: the pc machine, its
# serial ports, virtio-net and virtio-blk over PCI; -nodefaults): QEMU's
# Kconfig selects what the board needs, and the hundreds of devices it
# would build by default are left out (a shorter build in CI).
cat > "$W/src/configs/devices/x86_64-softmmu/lab.mak" <<'EOF'
CONFIG_I440FX=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_BLK=y
EOF
# --disable-relocatable: look for firmware in Debian's /usr/share/qemu, not
# next to the binary. --disable-download: everything comes from Debian.
(cd "$W/src/build" && ../configure --python=/usr/bin/python3 --prefix=/usr --disable-relocatable \
  --target-list=x86_64-softmmu --without-default-features --enable-tcg \
  --without-default-devices --with-devices-x86_64=lab \
  --disable-docs --disable-tools --disable-user --disable-werror --disable-debug-info \
  --disable-download --disable-install-blobs \
  --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu > "$W/configure.log" 2>&1) ||
  { tail -20 "$W/configure.log" >&2; say "configure failed ($W/configure.log)"; exit 1; }
(cd "$W/src/build" && ninja -j"$(nproc)" qemu-system-x86_64 > "$W/build.log" 2>&1) ||
  { tail -20 "$W/build.log" >&2; say "build failed ($W/build.log)"; exit 1; }
install -m 0755 "$W/src/build/qemu-system-x86_64" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$STAMP" > "$OUT/qemu/.stamp"
rm -rf "$W"
say "done: $BIN in $((SECONDS - start)) s ($("$BIN" -version | head -1))"
