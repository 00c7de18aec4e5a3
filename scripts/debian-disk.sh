#!/usr/bin/env bash
# Builds two bootable Debian 12 disks from Debian packages, the way a
# cloud or a VMware/Hyper-V/VirtualBox export would carry them: a partition
# table, the disk's own boot loader (GRUB), Debian's cloud kernel with its
# initramfs, systemd, a root login on the serial console.
#
#   $OUT/debian-bios.qcow2  MBR, one ext4 partition (/dev/vda1); GRUB for
#                           BIOS (grub-pc-bin: boot.img in the MBR, core.img
#                           in the gap before the partition)
#   $OUT/debian-uefi.qcow2  GPT, a FAT ESP (/dev/vda1) with GRUB as
#                           \EFI\BOOT\BOOTX64.EFI (grub-efi-amd64-bin,
#                           grub-mkstandalone), ext4 root (/dev/vda2) with
#                           efibootmgr
#
# Both are qcow2 with compressed clusters (about 60 MB each, 1 GiB virtual):
# that is what the lab copies into each lab host's memory. No loop device
# (CI machines may lack them): the file systems are made in files
# (mkfs.ext4 -d, mkfs.fat + mcopy), the partition table by sfdisk on the
# disk file, the partitions put in with dd, GRUB's images written by dd.
#
# Guest: Debian's linux-image-cloud-amd64 with an initramfs-tools
# initramfs holding virtio_pci and virtio_blk (the cloud kernel has them
# as modules), systemd as PID 1, a serial getty on ttyS0 that logs root in
# without a password (a test guest), hostname govisor-debian. Modules and
# files a VM of this kind never uses (most drivers, docs, man pages,
# locales) are left out to keep the disks small.
#
# Usage: scripts/debian-disk.sh [OUT]   (default: $GOVISOR_CACHE/guest, else .cache/guest)
# Env:   MIRROR (default: the first Debian mirror of the machine's apt sources)
# Idempotent: rebuilt only when this script or a package version changes.
# Needs root (debootstrap's chroot). Costs about 3 minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-${GOVISOR_CACHE:-$ROOT/.cache}/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
say() { printf '[debian-disk] %s\n' "$*" >&2; }
[[ $(id -u) == 0 ]] || { say "debootstrap needs root"; exit 1; }

MIRROR=${MIRROR:-$(grep -rhs -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
  grep -o -E 'https?://[^ ]+' | grep -v -E 'security|nodesource|google|backports' | head -1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# The packages beyond minbase (each pulls its dependencies).
PKGS=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,efibootmgr,procps
KVER_PKG=$(apt-cache policy linux-image-cloud-amd64 | awk '/Candidate:/ {print $2}')
STAMP=$( (cat "${BASH_SOURCE[0]}"; echo "$MIRROR $PKGS $KVER_PKG"; dpkg-query -W -f='${Version}' grub-pc-bin grub-efi-amd64-bin) | sha256sum | cut -c1-16)
if [[ -f $OUT/debian-bios.qcow2 && -f $OUT/debian-uefi.qcow2 && -f $OUT/.debian.stamp && $(cat "$OUT/.debian.stamp") == "$STAMP" ]]; then
  say "up to date: $OUT/debian-bios.qcow2, $OUT/debian-uefi.qcow2"
  exit 0
fi
for t in debootstrap mkfs.ext4 mkfs.fat mcopy sfdisk grub-mkimage grub-mkstandalone qemu-img; do
  command -v "$t" >/dev/null || { say "$t missing: run scripts/deps.sh test"; exit 1; }
done
[[ -f /usr/lib/grub/i386-pc/boot.img && -d /usr/lib/grub/x86_64-efi ]] || { say "grub-pc-bin, grub-efi-amd64-bin missing: run scripts/deps.sh test"; exit 1; }

W=$OUT/.debian-work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
R=$W/root
# debootstrap keeps the downloaded packages in a cache folder beside the
# images, so a rebuild (a script change) fetches only what changed.
mkdir -p "$OUT/.debian-debs"
say "debootstrap bookworm (minbase + $PKGS) from $MIRROR"
debootstrap --variant=minbase --include="$PKGS" --cache-dir="$OUT/.debian-debs" bookworm "$R" "$MIRROR" > "$W/debootstrap.log" 2>&1 || {
  tail -30 "$W/debootstrap.log" >&2
  exit 1
}
KVER=$(ls "$R/lib/modules" | head -1)
say "kernel $KVER"

echo govisor-debian > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 govisor-debian\n' > "$R/etc/hosts"
echo 'LANG=C.UTF-8' > "$R/etc/default/locale"
chroot "$R" passwd -d root >/dev/null
# A machine ID now, so that the first boot is not a "first boot" (no
# systemd-firstboot, no preset-all of every unit).
tr -d '-' < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
# The serial console logs root in at once: the tests type commands on it.
# -L: a VM's serial line has no modem signals.
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty -L --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
# Journal in RAM; warnings also on the console, so a failed boot shows why.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToKMsg=yes\nMaxLevelKMsg=warning\n' > "$R/etc/systemd/journald.conf.d/govisor.conf"
rm -rf "$R/var/log/journal"
# Units that only cost boot time in a test VM (a lab host runs its guests
# about 10x slower than hardware; systemd-analyze blame there): maintenance
# timers, time sync (no network), first-boot and catalogue jobs, kernel
# file systems and modules it does not use, users and sysctl defaults the
# packages already set, a random seed (the kernel seeds itself), a journal
# flush (the journal is volatile), the VT gettys (the console is ttyS0),
# utmp records. minbase has no D-Bus, and logind cannot run without a bus.
chroot "$R" systemctl mask >/dev/null 2>&1 \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer systemd-tmpfiles-clean.timer systemd-timesyncd.service \
  systemd-hwdb-update.service systemd-journal-catalog-update.service systemd-firstboot.service \
  systemd-logind.service systemd-update-done.service systemd-machine-id-commit.service \
  systemd-pstore.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
  sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  modprobe@.service kmod-static-nodes.service systemd-modules-load.service \
  systemd-sysusers.service systemd-sysctl.service systemd-random-seed.service \
  systemd-journal-flush.service getty-static.service getty@tty1.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service

# The initramfs: only the modules that find the root disk (the cloud
# kernel has ext4 and vfat's codepages built in or as listed here).
printf 'virtio_pci\nvirtio_blk\n' >> "$R/etc/initramfs-tools/modules"
sed -i 's/^MODULES=.*/MODULES=list/' "$R/etc/initramfs-tools/initramfs.conf"
chroot "$R" update-initramfs -u -k "$KVER" > /dev/null 2>&1

# Keep the modules a VM here loads after the initramfs; drop the rest
# (~90 MB of hardware drivers).
M=$R/lib/modules/$KVER/kernel
keep=$W/keep
mkdir -p "$keep"
for m in drivers/virtio drivers/block/virtio_blk.ko drivers/net/virtio_net.ko drivers/net/net_failover.ko \
  net/core/failover.ko drivers/char/hw_random/virtio-rng.ko drivers/firmware/efi/efivarfs.ko \
  fs/efivarfs fs/fat fs/nls fs/autofs drivers/char/virtio_console.ko drivers/firmware/qemu_fw_cfg.ko; do
  [[ -e $M/$m ]] || continue
  mkdir -p "$keep/$(dirname "$m")"
  cp -a "$M/$m" "$keep/$(dirname "$m")/"
done
rm -rf "$M"
mv "$keep" "$M"
chroot "$R" depmod "$KVER"
rm -rf "$R"/usr/share/{doc,man,info,locale,lintian,linda} "$R"/var/cache/apt/*.bin \
  "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/var/cache/debconf/*-old \
  "$R"/usr/lib/firmware "$R"/lib/firmware

# GRUB's menu, the same on both disks but for the root partition. The
# console is the first serial port from GRUB on; no menu wait.
# mitigations=off: in a lab host the guest's CPU is an emulated EPYC, for
# which the kernel would turn on return thunks and the like, costly under
# TCG (the lab hosts' own kernels boot so too) and pointless in a test VM.
grubcfg() { # grubcfg ROOTDEV GRUBROOT
  cat <<EOF
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
set root=$2
menuentry 'Debian GNU/Linux 12 (govisor test disk)' {
  echo 'Loading Linux $KVER ...'
  linux /boot/vmlinuz-$KVER root=$1 ro console=ttyS0,115200 quiet mitigations=off
  echo 'Loading initial ramdisk ...'
  initrd /boot/initrd.img-$KVER
}
EOF
}

# mkroot FSTAB GRUBCFG OUT MIB: the root file system as an ext4 image. No
# fsck pass in fstab: the image is made clean, and a boot that waited for
# systemd-fsck would cost seconds in a lab host.
SIZE_MIB=1024
ESP_MIB=32
mkroot() {
  printf '%s' "$1" > "$R/etc/fstab"
  mkdir -p "$R/boot/grub"
  printf '%s' "$2" > "$R/boot/grub/grub.cfg"
  mkfs.ext4 -q -F -L debian-root -d "$R" "$3" "$4"M
}

say "BIOS disk"
# BIOS: GRUB's modules on the disk too ($prefix/i386-pc), as grub-install
# leaves them; core.img carries what reads the partition and the menu.
mkdir -p "$R/boot/grub/i386-pc"
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$R/boot/grub/i386-pc/"
PART_MIB=$((SIZE_MIB - 1))
mkroot "/dev/vda1 / ext4 defaults 0 0
" "$(grubcfg /dev/vda1 '(hd0,msdos1)')" "$W/bios-root.img" $PART_MIB
rm -rf "$R/boot/grub/i386-pc"
D=$W/debian-bios.img
truncate -s ${SIZE_MIB}M "$D"
printf 'label: dos\nlabel-id: 0x676f7664\nstart=2048, type=83, bootable\n' | sfdisk -q "$D"
# core.img in sectors 1.. (before the partition at 1 MiB): boot.img's
# default kernel sector is 1 and diskboot.img's default blocklist starts at
# sector 2 with the length grub-mkimage writes, so no grub-setup is needed.
grub-mkimage -O i386-pc -o "$W/core.img" -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 normal linux serial terminal echo test configfile search
(( $(stat -c %s "$W/core.img") < 2047 * 512 )) || { say "core.img does not fit before the partition"; exit 1; }
# boot.img's code only: bytes 440.. hold the disk signature and partition table.
dd if=/usr/lib/grub/i386-pc/boot.img of="$D" bs=440 count=1 conv=notrunc status=none
dd if="$W/core.img" of="$D" bs=512 seek=1 conv=notrunc status=none
dd if="$W/bios-root.img" of="$D" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$W/bios-root.img"

say "UEFI disk"
D=$W/debian-uefi.img
PART_MIB=$((SIZE_MIB - ESP_MIB - 2))
mkdir -p "$R/boot/efi"
mkroot "/dev/vda2 / ext4 defaults 0 0
/dev/vda1 /boot/efi vfat umask=0077 0 0
" "$(grubcfg /dev/vda2 '(hd0,gpt2)')" "$W/uefi-root.img" $PART_MIB
# The ESP (FAT16: 32 MiB is too few clusters for FAT32; UEFI 2.10 §13.3.1.1
# has firmware read FAT12/16/32 on removable media): GRUB standalone (its modules in a memdisk) at the removable-media
# path every UEFI firmware boots without a boot entry (UEFI 2.10 §3.5.1.1),
# its built-in config passing on to the menu on the root partition.
printf 'configfile (hd0,gpt2)/boot/grub/grub.cfg\n' > "$W/early.cfg"
grub-mkstandalone -O x86_64-efi -o "$W/BOOTX64.EFI" \
  --modules="part_gpt ext2 fat normal linux serial terminal echo test configfile search efi_gop" \
  --install-modules="part_gpt part_msdos ext2 fat normal linux serial terminal echo test configfile search efi_gop all_video gzio" \
  --locales= --themes= --fonts= \
  "boot/grub/grub.cfg=$W/early.cfg"
mkfs.fat -C -F 16 -n ESP "$W/esp.img" $((ESP_MIB * 1024)) >/dev/null
MTOOLS_SKIP_CHECK=1 mmd -i "$W/esp.img" ::/EFI ::/EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -i "$W/esp.img" "$W/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
truncate -s ${SIZE_MIB}M "$D"
# GPT: the ESP from 1 MiB, the root after it (Linux filesystem type).
printf 'label: gpt\nstart=2048, size=%dMiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP\nsize=%dMiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n' \
  $ESP_MIB $PART_MIB | sfdisk -q "$D"
dd if="$W/esp.img" of="$D" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$W/uefi-root.img" of="$D" bs=1M seek=$((1 + ESP_MIB)) conv=notrunc,sparse status=none
rm -f "$W/uefi-root.img" "$W/esp.img"

for d in bios uefi; do
  qemu-img convert -c -f raw -O qcow2 "$W/debian-$d.img" "$OUT/debian-$d.qcow2.tmp"
  mv "$OUT/debian-$d.qcow2.tmp" "$OUT/debian-$d.qcow2"
done
echo "$STAMP" > "$OUT/.debian.stamp"
say "done: $(du -h "$OUT/debian-bios.qcow2" | cut -f1) debian-bios.qcow2, $(du -h "$OUT/debian-uefi.qcow2" | cut -f1) debian-uefi.qcow2"
