package vm

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
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
