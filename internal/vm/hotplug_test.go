package vm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/x86/acpi"
)

func TestHotplugPortsMatchACPI(t *testing.T) {
	for _, c := range []struct {
		name      string
		acpi, dev int
	}{
		{"GPE0 block", acpi.GPE0Block, pcihotplug.GPEBase},
		{"GPE0 length", acpi.GPE0BlockLen, pcihotplug.GPELen},
		{"hotplug GPE", acpi.HotplugGPE, pcihotplug.GPEBit},
		{"hotplug registers", acpi.PCIHotplugBase, pcihotplug.Base},
		{"hotplug length", acpi.PCIHotplugLen, pcihotplug.Size},
	} {
		if c.acpi != c.dev {
			t.Errorf("%s: ACPI tables say %#x, the device is at %#x", c.name, c.acpi, c.dev)
		}
	}
}

func TestSCILineIsShared(t *testing.T) {
	var got []bool
	l := &sciLine{set: func(v bool) { got = append(got, v) }}
	pm, gpe := l.source(sciPM1), l.source(sciGPE)
	for _, s := range []struct {
		f     func(bool)
		level bool
		want  bool
	}{
		{pm, true, true},
		{gpe, true, true},
		{pm, false, true}, // the GPE still holds the line up
		{gpe, false, false},
		{gpe, true, true},
		{gpe, false, false},
	} {
		s.f(s.level)
		if last := got[len(got)-1]; last != s.want {
			t.Fatalf("after %v: line %v, want %v (history %v)", s.level, last, s.want, got)
		}
	}
}

func TestDiskName(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab", 52: "vdba"} {
		if got := diskName(i); got != want {
			t.Errorf("diskName(%d) = %q, want %q", i, got, want)
		}
	}
}

// pio reads n bytes of port I/O as a little-endian number.
func pioRead(m *Machine, port uint64, n int) uint64 {
	b := make([]byte, n)
	m.pio.Read(port, b)
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// openFDs reports whether this process has path open.
func hasOpen(t *testing.T, path string) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// TestAttachDetachDisk plugs a disk into a machine with one boot disk, has
// a tiny guest eject it through the eject register, and checks that the
// slot empties and the image is closed.
func TestAttachDetachDisk(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	boot, hot := filepath.Join(dir, "boot.img"), filepath.Join(dir, "hot.img")
	for _, p := range []string{boot, hot} {
		if err := os.WriteFile(p, bytes.Repeat([]byte{0x5A}, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The boot disk is in slot 1, so the hot-plugged one lands in slot 2:
	// the guest ejects it as its _EJ0 would.
	const slot = 2
	var a kvmtest.Asm
	a.MovDX(pcihotplug.Base + pcihotplug.RegEject).MovEAX(1 << slot).OutEAX().Exit(0)
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: a.B, Addr: flatAddr}, DebugExit: true, Disks: []Disk{{Path: boot}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if got := m.hotplugSlots(); got != 0xFFFFFFFC {
		t.Errorf("hot-pluggable slots %#x, want 2-31", got)
	}
	if err := m.DetachDisk("vda"); !errors.Is(err, ErrNotHotplugged) {
		t.Errorf("detaching the boot disk: %v", err)
	}
	if _, err := m.AttachDisk(Disk{Path: filepath.Join(dir, "missing.img")}); err == nil {
		t.Error("attaching a missing image succeeded")
	}
	info, err := m.AttachDisk(Disk{Path: hot, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "vdb" || info.Slot != slot || !info.Hotplugged || info.State != "attached" {
		t.Errorf("attached %+v", info)
	}
	var id [4]byte
	m.pci.ConfigRead(slot, 0, 0, id[:])
	if id[0] != 0xF4 || id[1] != 0x1A {
		t.Errorf("slot %d vendor ID % X, want virtio's 1AF4", slot, id[:2])
	}
	if sts := pioRead(m, pcihotplug.GPEBase, 2); sts != 1<<pcihotplug.GPEBit {
		t.Errorf("GPE0_STS %#x", sts)
	}
	if up := pioRead(m, pcihotplug.Base+pcihotplug.RegUp, 4); up != 1<<slot {
		t.Errorf("UP %#x, want slot %d", up, slot)
	}
	if !hasOpen(t, hot) {
		t.Error("the attached image is not open")
	}
	for _, p := range []string{boot, hot, filepath.Join(dir, ".", "hot.img")} {
		if _, err := m.AttachDisk(Disk{Path: p}); !errors.Is(err, ErrDiskInUse) {
			t.Errorf("attaching %s again: %v", p, err)
		}
	}
	if st := m.DiskStats(); len(st) != 2 || st[1].Name != "vdb" || st[1].Path != hot {
		t.Errorf("disk stats with a hot-plugged disk: %+v", st)
	}
	if err := m.DetachDisk("vdc"); !errors.Is(err, ErrNoDisk) {
		t.Errorf("detaching an unknown disk: %v", err)
	}
	if err := m.DetachDisk("vdb"); err != nil {
		t.Fatal(err)
	}
	if down := pioRead(m, pcihotplug.Base+pcihotplug.RegDown, 4); down != 1<<slot {
		t.Errorf("DOWN %#x, want slot %d", down, slot)
	}
	if st, err := m.SaveState(); err != nil || len(st.Hotplug.Disks) != 1 || !st.Hotplug.Disks[0].Detaching ||
		st.Hotplug.Controller.GPESts != 1<<pcihotplug.GPEBit {
		t.Errorf("saving with a disk being detached: %v, %+v", err, st.Hotplug)
	}
	disks := m.Disks()
	if len(disks) != 2 || disks[0].Name != "vda" || disks[1].State != "detaching" {
		t.Errorf("disks while detaching: %+v", disks)
	}

	if ex := m.Run(); ex.Reason != ExitDebug || ex.Code != 0 {
		t.Fatalf("exit %+v %v", ex, ex.Err)
	}
	if disks := m.Disks(); len(disks) != 1 || disks[0].Name != "vda" {
		t.Errorf("disks after the eject: %+v", disks)
	}
	m.pci.ConfigRead(slot, 0, 0, id[:])
	if !bytes.Equal(id[:], []byte{0xFF, 0xFF, 0xFF, 0xFF}) {
		t.Errorf("ejected slot reads % X, want an absent function", id)
	}
	if hasOpen(t, hot) {
		t.Error("the ejected image is still open")
	}
	if _, err := m.AttachDisk(Disk{Path: hot}); !errors.Is(err, ErrStopped) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("attach to a stopped machine: %v", err)
	}
}
