package vm

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/firmware/efivars"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// uefiVars returns a fresh copy of OVMF's variable-store template and the
// code image.
func uefiVars(t *testing.T) (code []byte, varsPath string) {
	t.Helper()
	codePath, tmpl := kvmtest.OVMF(t)
	code, err := os.ReadFile(codePath)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	varsPath = filepath.Join(t.TempDir(), "vars.fd")
	if err := os.WriteFile(varsPath, vars, 0o600); err != nil {
		t.Fatal(err)
	}
	return code, varsPath
}

// bootUEFI boots disk through OVMF with the variable file at varsPath and
// returns the console once the machine stopped with want.
func bootUEFI(t *testing.T, cpus int, code []byte, varsPath, disk string, want ExitReason) string {
	t.Helper()
	console, m := bootUEFIMachine(t, cpus, 256, code, varsPath, disk, want)
	m.Close()
	return console
}

// bootUEFIMachine is bootUEFI with memMiB of RAM; it returns the stopped
// machine, not yet closed, for the test to look at.
func bootUEFIMachine(t *testing.T, cpus int, memMiB uint64, code []byte, varsPath, disk string, want ExitReason) (string, *Machine) {
	t.Helper()
	vars, err := os.OpenFile(varsPath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer vars.Close()
	var out syncBuffer
	m, err := New(Config{
		CPUs: cpus, MemoryMiB: memMiB, Firmware: code, FirmwareVars: vars, Console: &out, UUID: testUUID,
		Disks: []Disk{{Path: disk, ReadOnly: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Start(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Minute): // an OVMF boot to GUEST-DONE takes 3.5-4.5 minutes in a TCG lab host
		stallReport(t, m)
		m.Stop(Exit{Reason: ExitHost, Detail: "the test's time limit"})
	}
	ex := m.Wait()
	t.Logf("%d vCPUs: %s %s after %v; console:\n%s", cpus, ex.Reason, ex.Detail, time.Since(start).Round(time.Millisecond), out.String())
	if ex.Reason != want {
		m.Close()
		t.Fatalf("%d vCPUs: stopped with %s %s %v, want %s", cpus, ex.Reason, ex.Detail, ex.Err, want)
	}
	return out.String(), m
}

// monotonicCount returns the high half of the UEFI monotonic counter that
// OVMF keeps in its variable "MTC" and increments on every boot
// (MdeModulePkg/Universal/MonotonicCounterRuntimeDxe), with the number of
// BootOrder entries it stored.
func monotonicCount(t *testing.T, varsPath string) (mtc uint32, bootOrder int) {
	t.Helper()
	store, err := os.ReadFile(varsPath)
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := efivars.Get(store, "MTC")
	if err != nil || !ok || len(v.Data) != 4 {
		t.Fatalf("the variable store has no MTC (%v, %v): OVMF wrote nothing to its flash", ok, err)
	}
	bo, _, _ := efivars.Get(store, "BootOrder")
	return binary.LittleEndian.Uint32(v.Data), len(bo.Data) / 2
}

// TestOVMFBootsESPDisk boots the UEFI test disk (scripts/firmware.sh: GRUB
// as \EFI\BOOT\BOOTX64.EFI on a FAT ESP) through OVMF to the guest's
// GUEST-READY, twice from the same variable file: OVMF's writes (its boot
// options, and the monotonic counter it increments every boot) reach the
// file through the flash device, and the second boot reads the first's
// back. The guest finds its disk and ends with a reboot.
func TestOVMFBootsESPDisk(t *testing.T) {
	disk := kvmtest.ESPDisk(t)
	code, varsPath := uefiVars(t)
	tmpl, _ := os.ReadFile(varsPath)
	if _, ok, err := efivars.Get(tmpl, "MTC"); ok || err != nil {
		t.Fatalf("the template already has MTC (%v) or does not parse: %v", ok, err)
	}
	console := bootUEFI(t, 2, code, varsPath, disk, ExitReset)
	// OVMF's own console reaches the serial port (through the ISA
	// bridge) before GRUB takes it: the boot manager says what it boots.
	inOrder(t, console, "", "BdsDxe: starting Boot", "GRUB: loading the test kernel", "GUEST-READY", "GUEST-DONE")
	checkUEFIGuest(t, console)
	first, order := monotonicCount(t, varsPath)
	if first == 0 || order == 0 {
		t.Fatalf("after the first boot: MTC %d, %d boot options", first, order)
	}
	console = bootUEFI(t, 1, code, varsPath, disk, ExitReset)
	inOrder(t, console, "", "GUEST-READY", "GUEST-DONE")
	if second, _ := monotonicCount(t, varsPath); second != first+1 {
		t.Errorf("MTC %d after the second boot, want %d: the first boot's variables were lost", second, first+1)
	}
}

// TestUEFIConfigChecks: flash sizes OVMF cannot have are refused before
// any KVM work.
func TestUEFIConfigChecks(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "vars.fd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		code []byte
		want string
	}{{nil, "without firmware"}, {make([]byte, 4096), "multiples of 4 KiB"}, {make([]byte, 32<<20), "multiples of 4 KiB"}} {
		err := checkFirmware(Config{Firmware: c.code, FirmwareVars: f, MemoryMiB: 256, Console: io.Discard})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("code of %d bytes, vars of 1000: %v, want %q", len(c.code), err, c.want)
		}
	}
}

// checkUEFIGuest checks what the ESP test guest said of its machine: its
// virtio disk (vda: virtio-pci enabled the BAR OVMF placed). The test
// kernel has no EFI support, so it finds neither the ACPI tables nor
// SMBIOS OVMF installed (both are reached through the EFI system table),
// sees one CPU, and reboots; an EFI-enabled build of it found all of them
// on 2026-12-07 (docs/firmware.md).
func checkUEFIGuest(t *testing.T, console string) {
	t.Helper()
	i := strings.Index(console, "GUEST-READY")
	if i < 0 {
		t.Fatal("no GUEST-READY")
	}
	if !regexp.MustCompile(`(^|\s)vda(\s|$)`).MatchString(console[i:]) {
		t.Errorf("the guest's /sys/block lacks vda")
	}
}
