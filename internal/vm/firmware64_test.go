package vm

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/pci"
)

// TestPCI64Window checks the 64-bit window the DSDT gets: none while RAM
// fits below the PCI hole, else from RAM's end (rounded up to 1 GiB) to
// the top of the physical address space, where SeaBIOS places 64-bit BARs.
func TestPCI64Window(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		mib         uint64
		bits        uint8
		start, size uint64
	}{
		{3072, 40, 0, 0},
		{4096, 40, 5 * gib, 1<<40 - 5*gib},
		{3584, 39, 5 * gib, 1<<39 - 5*gib}, // 512 MiB above 4 GiB, rounded up
		{8192, 46, 9 * gib, 1<<46 - 9*gib},
		{4096, 32, 0, 0},    // no room above 4 GiB
		{1 << 20, 36, 0, 0}, // RAM beyond the address width
		{4096, 0, 0, 0},     // a width no CPU has
	} {
		start, size := pci64Window(c.mib, c.bits)
		if start != c.start || size != c.size {
			t.Errorf("%d MiB, %d bits: window %#x+%#x, want %#x+%#x", c.mib, c.bits, start, size, c.start, c.size)
		}
	}
}

// TestSeaBIOSBootsSyslinuxAbove4G boots the SYSLINUX disk through SeaBIOS
// with 4 GiB of RAM, 1 GiB of it above 4 GiB: SeaBIOS then places the
// virtio-blk BAR above 4 GiB and reads the disk through the transport's
// VIRTIO_PCI_CAP_PCI_CFG window (virtio 1.2 4.1.4.9), and Linux finds the
// BAR inside the DSDT's 64-bit window and uses the disk too.
func TestSeaBIOSBootsSyslinuxAbove4G(t *testing.T) {
	disk := kvmtest.SyslinuxDisk(t)
	console, log, _ := bootFirmware(t, 1, 4096, disk, 5*time.Minute)
	inOrder(t, console, log, "SeaBIOS (version", "Booting from Hard Disk", "SYSLINUX", "GUEST-READY", "GUEST-DONE")
	// SeaBIOS's log: "PCI: map device bdf=00:01.0  bar 0, addr ADDR, size ...".
	m := regexp.MustCompile(`bdf=00:01\.0\s+bar 0, addr ([0-9a-f]+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("SeaBIOS's log does not say where it put the disk's BAR:\n%s", log)
	}
	addr, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil || addr < highMemStart+1<<30 {
		t.Fatalf("the disk's BAR at %s, want above RAM's end (%v); SeaBIOS log:\n%s", m[1], err, log)
	}
}

// TestOVMFAperture checks the 64-bit aperture OVMF gets: the largest power
// of two up to OVMF's own 32 GiB that, aligned to its size from the end of
// RAM as OVMF aligns it, stays inside the DSDT's window; none without one.
func TestOVMFAperture(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		mib  uint64
		bits uint8
		want uint64
	}{
		{3072, 40, 0},           // no RAM above 4 GiB, no window
		{4096, 40, 32 * gib},    // window 5 GiB..1 TiB: at 32 GiB
		{4096, 36, 32 * gib},    // 5..64 GiB: 32..64 just fits
		{4096, 35, 16 * gib},    // 5..32 GiB: 16..32
		{4096, 34, 8 * gib},     // 5..16 GiB: 8..16
		{4096, 33, 2 * gib},     // 5..8 GiB: 4 GiB would need 8..12; 6..8
		{60 << 10, 36, 2 * gib}, // 61..64 GiB: 62..64
	} {
		start, size := pci64Window(c.mib, c.bits)
		got := ovmfAperture(start, size)
		if got != c.want {
			t.Errorf("%d MiB, %d bits (window %#x+%#x): aperture %#x, want %#x", c.mib, c.bits, start, size, got, c.want)
		}
		if base := (start + got - 1) &^ (got - 1); got != 0 && (base < start || base+got > start+size) {
			t.Errorf("%d MiB, %d bits: aperture %#x at %#x leaves the window %#x+%#x", c.mib, c.bits, got, base, start, size)
		}
	}
}

// TestOVMFBootsAbove4G boots the ESP disk through OVMF with 4 GiB of RAM,
// 1 GiB of it above 4 GiB: the guest finds all of it (OVMF's memory map,
// which GRUB hands Linux, has the RAM above 4 GiB), and OVMF put the
// disk's 64-bit BAR above RAM's end, inside the DSDT's 64-bit window
// (where Linux, with ACPI, keeps it: seen with an EFI-enabled test kernel),
// and the guest finds its disk there.
func TestOVMFBootsAbove4G(t *testing.T) {
	const mib = 4096
	disk := kvmtest.ESPDisk(t)
	code, varsPath := uefiVars(t)
	console, m := bootUEFIMachine(t, 1, mib, code, varsPath, disk, ExitReset)
	defer m.Close()
	inOrder(t, console, "", "BdsDxe: starting Boot", "GRUB: loading the test kernel", "GUEST-READY", "MemTotal:", "GUEST-DONE")
	checkUEFIGuest(t, console)
	mt := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindStringSubmatch(console)
	if mt == nil {
		t.Fatal("the guest did not say its MemTotal")
	}
	// MemTotal is RAM less the kernel's own reservations: more than
	// 3.5 GiB only if the guest found the RAM above 4 GiB.
	if kb, _ := strconv.ParseUint(mt[1], 10, 64); kb < 3584<<10 {
		t.Errorf("the guest found %s kB of memory of %d MiB: the RAM above 4 GiB is missing", mt[1], mib)
	}
	var bar [8]byte
	m.pci.ConfigRead(pci.FirstSlot, 0, 0x10, bar[:]) // BAR 0 and 1: one 64-bit BAR (PCI 3.0 6.2.5.1)
	addr := binary.LittleEndian.Uint64(bar[:]) &^ 0xF
	bits, err := m.guestPhysBits()
	if err != nil {
		t.Fatal(err)
	}
	// OVMF put it in the aperture govisor sized or, trusting the CPU's
	// address width, in the top eighth of the address space: either way
	// inside the DSDT's window, which starts at RAM's end.
	start, size := pci64Window(mib, bits)
	aperture := ovmfAperture(start, size)
	t.Logf("disk BAR 0 at %#x; DSDT window %#x+%#x; classic aperture %#x (physical address bits %d)", addr, start, size, aperture, bits)
	if addr < start || addr >= start+size {
		t.Errorf("the disk's BAR 0 at %#x, want it in the DSDT's 64-bit window %#x+%#x", addr, start, size)
	}
}
