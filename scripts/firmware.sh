#!/usr/bin/env bash
# Fetches the firmware images govisor boots with --firmware, from Debian
# packages, without installing them (apt-get download + dpkg -x):
#
#   $OUT/bios-256k.bin   SeaBIOS built for QEMU (package seabios)
#   $OUT/syslinux.img    a BIOS-bootable disk: SYSLINUX's MBR, one FAT16
#                        partition with SYSLINUX, $OUT/bzImage and
#                        $OUT/initrd.cpio (the test guest, guest/build.sh),
#                        booted with run="ls /sys/firmware/acpi/tables; nproc"
#   $OUT/OVMF_CODE_4M.fd OVMF (package ovmf), the 4 MiB build without
#   $OUT/OVMF_VARS_4M.fd   secure boot: its code and its variable-store template
#   $OUT/esp.img         a UEFI-bootable disk: a GPT with one EFI system
#                        partition holding GRUB as \EFI\BOOT\BOOTX64.EFI
#                        (grub-mkimage from grub-efi-amd64-bin and grub-common),
#                        its grub.cfg, $OUT/bzImage and $OUT/initrd.cpio; GRUB
#                        loads the kernel through the Linux boot protocol,
#                        so the test kernel needs no EFI support (without
#                        it, it finds neither ACPI nor SMBIOS, which OVMF
#                        publishes in its system table); its command,
#                        run="nproc; grep MemTotal /proc/meminfo; ls
#                        /sys/firmware/acpi/tables /sys/block; cat
#                        /sys/class/dmi/id/{sys_vendor,product_uuid};
#                        sleep 20" done=reboot, says what the guest found
#                        (memory, ACPI, its disk, SMBIOS),
#                        leaves tests time to snapshot or migrate the
#                        running guest, and ends with a reboot
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
  APPEND console=ttyS0 quiet rodata=off run="ls /sys/firmware/acpi/tables; nproc; cd /sys/class/dmi/id && echo DMI: $(cat sys_vendor product_name product_uuid)"
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

# esp_disk: the UEFI-boot test disk, made like syslinux.img (no loop
# device). GRUB comes from Debian's packages unpacked into a scratch folder:
# grub-mkimage (grub-common) builds an EFI image of the x86_64-efi modules
# (grub-efi-amd64-bin) with an early configuration that finds the ESP and
# reads its grub.cfg.
esp_disk() {
  local img=$OUT/esp.img stamp work part pkg
  if [[ ! -f $OUT/bzImage || ! -f $OUT/initrd.cpio ]]; then
    say "no test guest in $OUT (guest/build.sh makes it): skipping esp.img"
    return 0
  fi
  stamp=$( (cat "${BASH_SOURCE[0]}" "$OUT/bzImage" "$OUT/initrd.cpio"
    for pkg in grub-common grub-efi-amd64-bin; do apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}'; done) | sha256sum | cut -c1-16)
  if [[ -f $img && -f $OUT/.esp.stamp && $(cat "$OUT/.esp.stamp") == "$stamp" ]]; then
    say "up to date: $img"
    return 0
  fi
  say "building $img"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && for pkg in grub-common grub-efi-amd64-bin; do
    apt-get download -q "$pkg" >/dev/null 2>&1 || apt-get download -q "$pkg"
  done)
  for pkg in "$work"/*.deb; do dpkg -x "$pkg" "$work/root"; done
  # The early configuration runs before any file system is read: it finds
  # the partition holding grub.cfg and hands over to the normal mode.
  cat > "$work/early.cfg" <<'CFG'
search --no-floppy --file --set=root /EFI/BOOT/grub.cfg
set prefix=($root)/EFI/BOOT
CFG
  cat > "$work/grub.cfg" <<'CFG'
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
echo "GRUB: loading the test kernel"
linux /bzImage console=ttyS0 quiet rodata=off run="nproc; grep MemTotal /proc/meminfo; ls /sys/firmware/acpi/tables /sys/block; cat /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_uuid; sleep 20" done=reboot
initrd /initrd.cpio
boot
CFG
  "$work/root/usr/bin/grub-mkimage" -d "$work/root/usr/lib/grub/x86_64-efi" -O x86_64-efi \
    -o "$work/BOOTX64.EFI" -p /EFI/BOOT -c "$work/early.cfg" \
    part_gpt part_msdos fat search search_fs_file normal configfile linux echo serial terminal test
  part=$work/part.img
  # 32 MiB of FAT16, starting at sector 2048: too small for FAT32, and UEFI
  # firmware reads FAT12/16 as well (UEFI 2.10 section 13.3.1.1).
  mkfs.vfat -C -F 16 -h 2048 -n GOVISOR-ESP "$part" 32768 >/dev/null
  export MTOOLS_SKIP_CHECK=1
  mmd -i "$part" ::/EFI ::/EFI/BOOT
  mcopy -i "$part" "$work/BOOTX64.EFI" "$work/grub.cfg" ::/EFI/BOOT/
  mcopy -i "$part" "$OUT/bzImage" "$OUT/initrd.cpio" ::/
  truncate -s $(((1 + 32 + 1) << 20)) "$work/disk.img"
  # A GPT with one EFI system partition (type C12A7328-F81F-11D2-BA4B-00A0C93EC93B).
  printf 'label: gpt\nlabel-id: 676F7673-0000-4000-8000-000000000001\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=676F7673-0000-4000-8000-000000000002\n' | sfdisk -q "$work/disk.img"
  dd if="$part" of="$work/disk.img" bs=1M seek=1 conv=notrunc status=none
  mv "$work/disk.img" "$img"
  echo "$stamp" > "$OUT/.esp.stamp"
}

fetch seabios usr/share/seabios/bios-256k.bin
fetch ovmf usr/share/OVMF/OVMF_CODE_4M.fd usr/share/OVMF/OVMF_VARS_4M.fd
syslinux_disk
esp_disk
