#!/usr/bin/env bash
# Builds what a govisor lab host boots (internal/lab), from Debian packages
# only, into a cache folder:
#
#   $OUT/vmlinuz    Debian's linux-image-cloud-amd64 kernel (apt-get download +
#                   dpkg -x: the machine's /boot stays untouched)
#   $OUT/base.cpio  initramfs: busybox-static, the kernel modules a lab host
#                   loads (kvm, kvm_amd/kvm_intel, virtio-net, tun, bridge,
#                   veth, nfsd and the NFSv4 client), host tools the tests
#                   run (mkfs.ext4, e2fsck, debugfs, iproute2's ip,
#                   qemu-img), the NFS server and client programs of
#                   nfs-kernel-server/nfs-common (the lab's shared storage),
#                   with their libraries, and lab/init.sh as /init
#   $OUT/qemu.cpio  QEMU itself (binary, libraries, firmware) for benchmarks
#                   that compare govisor with QEMU inside a lab host
#
# Usage: scripts/lab-build.sh [OUT]   (default: $GOVISOR_CACHE/lab, else .cache/lab)
# Idempotent: rebuilt only when this script, lab/init.sh or a package version changes.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/lab}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
say() { printf '[lab/build] %s\n' "$*" >&2; }

"$ROOT/scripts/deps.sh" lab

# The kernel: $LAB_KERNEL (a linux-image-*-cloud-amd64 package), else the
# one the metapackage points at (bookworm, or bookworm-updates/security).
KPKG=${LAB_KERNEL:-}
[[ -n $KPKG ]] || KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1)
if [[ -z $KPKG ]]; then apt-get update -qq; KPKG=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1); fi
[[ -n $KPKG ]] || { say "cannot find Debian's linux-image-cloud-amd64 kernel package"; exit 1; }
KVER=${KPKG#linux-image-}
tools=(busybox-static e2fsprogs iproute2 qemu-utils qemu-system-x86 libwrap0 libtirpc3)
NFS_PKGS=(nfs-kernel-server nfs-common)
vers=$(dpkg-query -W -f='${Package}=${Version} ' "${tools[@]}")
vers+=$(apt-cache policy "${NFS_PKGS[@]}" | sed -n 's/.*Candidate: //p' | tr '\n' ' ')
STAMP=$(cat "$0" "$ROOT/lab/init.sh" | sha256sum | cut -c1-16)-$KVER-$(echo "$vers" | sha256sum | cut -c1-8)
if [[ -f $OUT/.stamp && $(cat "$OUT/.stamp") == "$STAMP" && -f $OUT/base.cpio && -f $OUT/qemu.cpio ]]; then
  say "up to date: $OUT ($KVER)"
  exit 0
fi

W=$OUT/.work; rm -rf "$W"; mkdir -p "$W"
if [[ ! -f $OUT/kroot/boot/vmlinuz-$KVER ]]; then
  say "fetching $KPKG"
  rm -rf "$OUT/kroot" "$OUT"/linux-image-*.deb
  (cd "$OUT" && apt-get download -q "$KPKG" >&2 && dpkg -x linux-image-*.deb kroot && rm -f linux-image-*.deb)
fi
MODDIR=$OUT/kroot/lib/modules/$KVER

# Modules in load order: each wanted module after the ones its .modinfo
# "depends=" names (the package has no modules.dep: depmod makes it at install).
wanted=(irqbypass kvm kvm-amd kvm-intel virtio_pci virtio_net virtio_blk tun bridge veth nfsv4 nfsd)
declare -A seen=()
order=()
add_mod() { # add_mod NAME
  local name=${1//-/_} path deps d
  [[ -n ${seen[$name]:-} ]] && return 0
  seen[$name]=1
  path=$(find "$MODDIR/kernel" -regextype egrep -regex ".*/(${name}|${name//_/-})\.ko(\.xz|\.zst)?" | head -1)
  if [[ -z $path ]]; then
    grep -q -E "/(${name}|${name//_/-})\.ko$" "$MODDIR/modules.builtin" || { say "module $1 not found"; exit 1; }
    return 0 # built in
  fi
  case $path in
    *.xz) deps=$(xz -dc "$path" | grep -a -o -m1 'depends=[a-z0-9_,-]*' | head -1 || true) ;;
    *.zst) deps=$(zstd -qdc "$path" | grep -a -o -m1 'depends=[a-z0-9_,-]*' | head -1 || true) ;;
    *) deps=$(grep -a -o -m1 'depends=[a-z0-9_,-]*' "$path" | head -1) ;;
  esac
  deps=$(echo "${deps#depends=}" | tr ',' ' ')
  for d in $deps; do add_mod "$d"; done
  order+=("${path#$MODDIR/}")
}
for m in "${wanted[@]}"; do add_mod "$m"; done

IR=$W/ir
mkdir -p "$IR"/{bin,sbin,dev,proc,sys,tmp,run,mnt,etc,root,lib/modules,usr/bin,usr/sbin,opt/govisor/bin}
mkdir -p "$IR/var"; ln -s /run "$IR/var/run"
cp /bin/busybox "$IR/bin/busybox"
: > "$IR/lib/modules/order"
for rel in "${order[@]}"; do
  f=$(basename "$rel"); src=$MODDIR/$rel
  case $f in
    *.xz) xz -dc "$src" > "$IR/lib/modules/${f%.xz}"; f=${f%.xz} ;;
    *.zst) zstd -qdc "$src" > "$IR/lib/modules/${f%.zst}"; f=${f%.zst} ;;
    *) cp "$src" "$IR/lib/modules/$f" ;;
  esac
  echo "$f" >> "$IR/lib/modules/order"
done
install -m 0755 "$ROOT/lab/init.sh" "$IR/init"
echo "root:x:0:0:root:/root:/bin/sh" > "$IR/etc/passwd"
echo "root:x:0:" > "$IR/etc/group"
echo lab > "$IR/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$IR/etc/hosts"

# copy_prog DEST PROG...: programs with the shared libraries ldd names.
copy_prog() {
  local dest=$1 p l; shift
  for p in "$@"; do
    p=$(command -v "$p"); mkdir -p "$dest$(dirname "$p")"; cp -L "$p" "$dest$p"
    for l in $(ldd "$p" 2>/dev/null | grep -o '/[^ ]*'); do
      [[ -e $dest$l ]] && continue
      mkdir -p "$dest$(dirname "$l")"; cp -L "$l" "$dest$l"
    done
  done
}
copy_prog "$IR" mkfs.ext4 e2fsck debugfs ip qemu-img

# The lab's shared storage (internal/lab: the storage host exports a disk
# over NFSv4, the lab hosts mount it): the programs of Debian's NFS packages,
# unpacked (installing them would start NFS services on this machine).
NX=$W/nfs; mkdir -p "$NX"
(cd "$NX" && apt-get download -q "${NFS_PKGS[@]}" >&2 2>/dev/null && for d in *.deb; do dpkg -x "$d" .; done)
for p in usr/sbin/rpc.mountd usr/sbin/rpc.nfsd usr/sbin/exportfs sbin/mount.nfs; do
  mkdir -p "$IR/$(dirname "$p")"; cp "$NX/$p" "$IR/$p"
  for l in $(ldd "$NX/$p" | grep -o '/[^ ]*'); do
    [[ -e $IR$l ]] && continue
    mkdir -p "$IR$(dirname "$l")"; cp -L "$l" "$IR$l"
  done
  if ldd "$NX/$p" | grep -q 'not found'; then say "$p: libraries missing: $(ldd "$NX/$p" | grep 'not found' | tr -s ' \t\n' ' ') (scripts/deps.sh lab installs them)"; exit 1; fi
done
ln -sf mount.nfs "$IR/sbin/mount.nfs4"
mkdir -p "$IR/var/lib/nfs/v4recovery"
# libtirpc reads the transports from /etc/netconfig, protocols by name.
for f in /etc/netconfig /etc/protocols /etc/services; do [[ -f $f ]] && cp "$f" "$IR$f"; done
(cd "$IR" && find . | sort | cpio -o -H newc --quiet -R 0:0) > "$OUT/base.cpio.tmp"

# QEMU for the side-by-side benchmarks (large: only added when asked for).
QR=$W/qemu
copy_prog "$QR" qemu-system-x86_64
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
  [[ -d $d ]] && { mkdir -p "$QR$(dirname "$d")"; cp -rL "$d" "$QR$d"; }
done
(cd "$QR" && find . | sort | cpio -o -H newc --quiet -R 0:0) > "$OUT/qemu.cpio.tmp"

cp "$OUT/kroot/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
mv "$OUT/base.cpio.tmp" "$OUT/base.cpio"
mv "$OUT/qemu.cpio.tmp" "$OUT/qemu.cpio"
echo "$KVER" > "$OUT/kernel-version"
rm -rf "$W"
echo "$STAMP" > "$OUT/.stamp"
say "done: $OUT (kernel $KVER, modules: ${#order[@]}, base $(du -h "$OUT/base.cpio" | cut -f1), qemu $(du -h "$OUT/qemu.cpio" | cut -f1))"
