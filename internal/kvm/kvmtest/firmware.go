package kvmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// SeaBIOS returns the path of the SeaBIOS image that scripts/firmware.sh
// (run by `make guest`) puts beside the test guest.
func SeaBIOS(t testing.TB) string { return firmwareFile(t, "bios-256k.bin") }

// SyslinuxDisk returns the path of the BIOS-bootable test disk that
// scripts/firmware.sh builds: SYSLINUX booting the test guest with
// run="ls /sys/firmware/acpi/tables; nproc; ...DMI: VENDOR PRODUCT UUID". It takes a Linux boot slot.
func SyslinuxDisk(t testing.TB) string {
	t.Helper()
	p := firmwareFile(t, "syslinux.img")
	acquireSlot(t)
	return p
}

// firmwareFile returns the path of a file of the firmware boot tests in
// the test guest's folder. It fails the test, naming the fix, when it is
// missing: a machine with KVM must run the firmware boot tests.
func firmwareFile(t testing.TB, name string) string {
	t.Helper()
	Require(t)
	dir := os.Getenv("GOVISOR_GUEST_DIR")
	if dir == "" {
		if c := os.Getenv("GOVISOR_CACHE"); c != "" {
			dir = filepath.Join(c, "guest")
		} else if root := repoRoot(); root != "" {
			dir = filepath.Join(root, ".cache", "guest")
		}
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("firmware boot test file missing (%v): run scripts/firmware.sh and scripts/debian-disk.sh (`make guest` does)", err)
	}
	return p
}

// DebianDisk returns the path of a Debian 12 test disk that
// scripts/debian-disk.sh builds, kind "bios" (MBR, GRUB for BIOS) or
// "uefi" (GPT, GRUB on a FAT ESP): debian-KIND.qcow2, with systemd and
// root logged in on ttyS0. The disk is the cache's: boot a copy or an
// overlay. It takes a Linux boot slot.
func DebianDisk(t testing.TB, kind string) string {
	t.Helper()
	p := firmwareFile(t, "debian-"+kind+".qcow2")
	acquireSlot(t)
	return p
}

// OVMF returns the paths of OVMF's code and variable-store template (the
// 4 MiB build without secure boot) that scripts/firmware.sh fetches.
//
// In a lab host under TCG the UEFI tests need the lab's own QEMU
// (GOVISOR_LAB_QEMU=patched, scripts/lab-qemu.sh, which `make test`
// builds): Debian's QEMU 10 aborts the whole lab host on a nested guest's
// CR8 write while a virtual interrupt is pending, which EDK II's interrupt
// return does. In a KVM-accelerated lab and on a host with KVM they always
// run.
func OVMF(t testing.TB) (code, vars string) {
	t.Helper()
	uefiGate(t)
	return firmwareFile(t, "OVMF_CODE_4M.fd"), firmwareFile(t, "OVMF_VARS_4M.fd")
}

// uefiGate stops a UEFI boot test in a TCG lab host on Debian's QEMU (see
// OVMF): a skip, or in CI, where a KVM test never skips, a failure.
func uefiGate(t testing.TB) {
	t.Helper()
	Require(t)
	kind := os.Getenv("GOVISOR_LAB_QEMU")
	if os.Getenv("GOVISOR_LAB") != "1" || kind == "kvm" || kind == "patched" {
		return
	}
	msg := "a UEFI boot in a TCG lab host on Debian's QEMU, which aborts on OVMF in a nested guest (docs/firmware.md): " +
		"build the lab's QEMU first with `make lab-qemu` (scripts/lab-qemu.sh; `make test` does)"
	if os.Getenv("CI") == "true" {
		t.Fatal("FAILED: " + msg)
	}
	t.Skip("SKIPPED: " + msg)
}

// ESPDisk returns the path of the UEFI-bootable test disk that
// scripts/firmware.sh builds: GRUB on an EFI system partition booting the
// test guest, which says its CPU count, MemTotal, ACPI tables and SMBIOS
// vendor and UUID, waits 20 s (time for a test to snapshot or
// migrate it in a TCG lab host) and reboots (done=reboot). It takes a Linux
// boot slot.
func ESPDisk(t testing.TB) string {
	t.Helper()
	uefiGate(t)
	p := firmwareFile(t, "esp.img")
	acquireSlot(t)
	return p
}
