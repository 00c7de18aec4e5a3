#!/usr/bin/env bash
# Builds a full Debian 12 guest from Debian packages only: the minimal
# kernel with what systemd needs (debian.fragment) and an ext4 root file
# system made by debootstrap, booted from virtio-blk as root=/dev/vda.
#
#   $OUT/bzImage, $OUT/vmlinux   kernel (guest/build.sh with debian.fragment)
#   $OUT/rootfs.ext4             Debian 12 (systemd, getty on ttyS0, root
#                                without password on the serial console,
#                                tuned for kvm_pvm: see below)
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
printf '127.0.0.1 localhost\n127.0.1.1 govisor-debian\n' > "$WORK/etc/hosts"
# pam_env reads the locale at login (minbase has no locales package).
echo 'LANG=C.UTF-8' > "$WORK/etc/default/locale"
# Root is mounted read-write by the kernel (rw): no fsck pass, no remount.
printf '/dev/vda / ext4 defaults 0 0\n' > "$WORK/etc/fstab"
# Root logs in on the serial console without a password (a test guest).
chroot "$WORK" passwd -d root >&2
# A machine ID now, so the first boot is not a "first boot" (no
# systemd-firstboot, no preset-all of every unit).
tr -d '-' < /proc/sys/kernel/random/uuid > "$WORK/etc/machine-id"

# kvm_pvm (DESIGN.md) runs guest user space with the host's CPUID and XCR0,
# so glibc picks AVX2/AVX-512 string functions, while the guest kernel
# (noxsave, because kvm_pvm cannot emulate XSAVE at CPL0) saves only the
# legacy FXSAVE area on a context switch: the upper halves of the vector
# registers leak between guest processes (seen: a probe in the test guest
# read another process's YMM lanes). PID 1 gets GLIBC_TUNABLES from the
# kernel command line (govisor appends it on kvm_pvm); every service gets it
# here. Elsewhere it only costs glibc its AVX string functions.
TUNABLES='glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX512ER,-AVX512PF,-FMA,-F16C,-AVX_VNNI,-XSAVEC,-XSAVE,-OSXSAVE'
mkdir -p "$WORK/etc/systemd/system.conf.d" "$WORK/etc/systemd/journald.conf.d"
# Guest-kernel code is emulated on kvm_pvm (~1M instructions/s), so a boot
# takes tens of minutes: systemd's 90 s start and device timeouts would
# fail units that are merely slow (boot with systemd.service_watchdogs=0 too:
# journald's and udevd's 3 min watchdogs have no system.conf switch).
cat > "$WORK/etc/systemd/system.conf.d/govisor.conf" <<EOF
[Manager]
DefaultEnvironment="GLIBC_TUNABLES=$TUNABLES"
ShowStatus=yes
DefaultTimeoutStartSec=30min
DefaultDeviceTimeoutSec=30min
DefaultTimeoutStopSec=2min
EOF
# Many of systemd's own units set TimeoutSec=90s themselves (seen:
# systemd-sysctl and systemd-sysusers killed after 90 s at 24-30 s of CPU
# each): a drop-in for every service raises it.
mkdir -p "$WORK/etc/systemd/system/service.d"
printf '[Service]\nTimeoutStartSec=30min\n' > "$WORK/etc/systemd/system/service.d/govisor.conf"
# Journal in RAM; errors also go to the kernel log, hence to the serial
# console, so a failed boot leaves its reasons in the test's output.
printf '[Journal]\nStorage=volatile\nForwardToKMsg=yes\nMaxLevelKMsg=warning\n' \
  > "$WORK/etc/systemd/journald.conf.d/govisor.conf"
rm -rf "$WORK/var/log/journal"
# udevd kills a worker whose event takes longer than event_timeout (180 s).
printf 'event_timeout=1800\nchildren_max=4\n' >> "$WORK/etc/udev/udev.conf"
# Units that do nothing useful in a test VM but cost minutes here (every
# process that loads libsystemd-shared takes 20-30 s of CPU on kvm_pvm):
# timers for maintenance jobs, first-boot and update jobs, kernel file
# systems and modules this kernel does not have (no modules, no debugfs,
# no mqueue), users that the packages' postinst already created, sysctl
# defaults, a random seed (virtio-rng seeds the kernel), a journal flush
# (volatile journal), a remount (the kernel mounts / rw) and the boot and
# runlevel records in utmp. systemd-update-utmp is also the only client of
# PID 1's private D-Bus socket during this boot, and on kvm_pvm PID 1 aborts
# serving it (seen in two boots out of two: "Assertion 'm' failed at
# src/libsystemd/sd-bus/bus-objects.c:1665, function
# vtable_member_hash_func()", then "Freezing execution"), see README.md.
chroot "$WORK" systemctl mask >&2 \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  systemd-tmpfiles-clean.timer systemd-timesyncd.service \
  ldconfig.service systemd-hwdb-update.service systemd-journal-catalog-update.service \
  systemd-update-done.service systemd-firstboot.service systemd-machine-id-commit.service \
  systemd-pstore.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  modprobe@.service kmod-static-nodes.service systemd-modules-load.service \
  systemd-sysusers.service systemd-sysctl.service systemd-random-seed.service \
  systemd-journal-flush.service systemd-remount-fs.service \
  systemd-update-utmp-runlevel.service systemd-update-utmp.service
# Every generator is a process that loads libsystemd-shared (minutes of
# emulated page faults here) before systemd queues a single job. Keep the
# ones this guest uses: fstab (root), getty (serial getty for console=),
# debug (systemd.debug_shell) and run (systemd.run=); mask the others.
mkdir -p "$WORK/etc/systemd/system-generators"
for g in cryptsetup gpt-auto hibernate-resume integritysetup veritysetup \
  rc-local system-update sysv; do
  ln -sf /dev/null "$WORK/etc/systemd/system-generators/systemd-$g-generator"
done
# minbase has no D-Bus (systemd only recommends it), and logind cannot run
# without a bus: it would fail and restart over and over. login works
# without it (pam_systemd is not installed either).
if [[ ! -e $WORK/usr/bin/dbus-daemon ]]; then
  chroot "$WORK" systemctl mask systemd-logind.service >&2
fi
# A VM's serial line has no modem signals: -L (local line, no carrier wait).
mkdir -p "$WORK/etc/systemd/system/serial-getty@.service.d"
cat > "$WORK/etc/systemd/system/serial-getty@.service.d/govisor.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty -L -o '-p -- \\u' --keep-baud 115200,57600,38400,9600 - $TERM
EOF
rm -rf "$WORK/var/cache/apt/archives/"*.deb "$WORK/var/lib/apt/lists/"*_Packages
say "making $SIZE ext4 image"
mkfs.ext4 -q -F -L govisor-root -d "$WORK" "$OUT/rootfs.ext4.tmp" "$SIZE"
mv "$OUT/rootfs.ext4.tmp" "$OUT/rootfs.ext4"
rm -rf "$WORK"
say "done: $OUT"
