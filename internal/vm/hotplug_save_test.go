package vm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// hotBAR is where the tests place a hot-plugged function's BAR, as the
// guest's PCI core would (clear of the boot devices' BARs).
const hotBAR = 0xE0000000

// Offsets in the virtio-pci common configuration (virtio 1.2 4.1.4.3).
const (
	commonNumQueues = 0x12
	commonStatus    = 0x14
)

// driveHotSlot does what a guest's PCI core and virtio driver start with
// on a hot-added function: it places and enables the BAR and sets the
// device status to ACKNOWLEDGE|DRIVER.
func driveHotSlot(t *testing.T, m *Machine, slot int) {
	t.Helper()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], hotBAR)
	m.pci.ConfigWrite(slot, 0, uint16(0x10+4*pcitransport.BARIndex), b[:])
	binary.LittleEndian.PutUint32(b[:], 0)
	m.pci.ConfigWrite(slot, 0, uint16(0x14+4*pcitransport.BARIndex), b[:])
	var cmd [2]byte
	m.pci.ConfigRead(slot, 0, 0x04, cmd[:])
	binary.LittleEndian.PutUint16(cmd[:], binary.LittleEndian.Uint16(cmd[:])|pci.CommandMemory)
	m.pci.ConfigWrite(slot, 0, 0x04, cmd[:])
	if !m.mmio.Write(hotBAR+commonStatus, []byte{3}) {
		t.Fatal("the hot-plugged function's BAR is not mapped after the host placed it")
	}
}

// checkHotSlot checks that slot of m holds the function driveHotSlot left:
// the same configuration space as want's, the BAR mapped, the status kept.
func checkHotSlot(t *testing.T, m *Machine, slot int, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	m.pci.ConfigRead(slot, 0, 0, got)
	if !bytes.Equal(got, want) {
		t.Errorf("slot %d config space\n got % X\nwant % X", slot, got, want)
	}
	var st [1]byte
	if !m.mmio.Read(hotBAR+commonStatus, st[:]) || st[0] != 3 {
		t.Errorf("device status through the BAR: %d, want ACKNOWLEDGE|DRIVER (3)", st[0])
	}
	var nq [2]byte
	if m.mmio.Read(hotBAR+commonNumQueues, nq[:]); binary.LittleEndian.Uint16(nq[:]) == 0 {
		t.Error("the restored function has no queues")
	}
}

// slotConfig reads the first 64 bytes of slot's configuration space.
func slotConfig(m *Machine, slot int) []byte {
	b := make([]byte, 64)
	m.pci.ConfigRead(slot, 0, 0, b)
	return b
}

// ejectFromGuest writes slot's bit to the eject register, as the guest's
// _EJ0 does.
func ejectFromGuest(m *Machine, slot int) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], 1<<slot)
	m.pio.Write(pcihotplug.Base+pcihotplug.RegEject, b[:])
}

// checkDetach detaches name from m and ejects it as the guest would: the
// slot empties and the image is closed, and the slot takes a disk again.
func checkDetach(t *testing.T, m *Machine, name string, slot int, path string) {
	t.Helper()
	if err := m.DetachDisk(name); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if down := pioRead(m, pcihotplug.Base+pcihotplug.RegDown, 4); down != 1<<slot {
		t.Errorf("DOWN %#x after the detach request, want slot %d", down, slot)
	}
	ejectFromGuest(m, slot)
	for _, d := range m.Disks() {
		if d.Name == name {
			t.Errorf("%s still listed after the eject: %+v", name, m.Disks())
		}
	}
	if hasOpen(t, path) {
		t.Errorf("%s is still open after the eject", path)
	}
	info, err := m.AttachDisk(Disk{Path: path})
	if err != nil || info.Slot != slot {
		t.Errorf("attach into the emptied slot: %+v, %v", info, err)
	}
}

// hotMachine starts a counting guest with the given boot disks and
// hot-plugs hot into it, driving the new function as a guest would.
func hotMachine(t *testing.T, boot []Disk, hot string) (*Machine, DiskInfo) {
	t.Helper()
	kvmtest.Require(t)
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}, DebugExit: true, Disks: boot})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(Exit{Reason: ExitHost}); m.Wait(); m.Close() })
	waitCounter(t, m, 1000)
	info, err := m.AttachDisk(Disk{Path: hot, Serial: "hot-serial"})
	if err != nil {
		t.Fatal(err)
	}
	driveHotSlot(t, m, info.Slot)
	return m, info
}

// TestHotplugSnapshotRestore snapshots a running machine with a hot-plugged
// disk and restores it: the disk is reopened in the same slot with its
// function's state, the insertion the guest has not handled yet is still
// pending, and the disk can be detached from the restored machine.
func TestHotplugSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	boot, hot := filepath.Join(dir, "boot.qcow2"), filepath.Join(dir, "hot.qcow2")
	newImage(t, boot, "qcow2", []int64{0})
	newImage(t, hot, "qcow2", []int64{1})
	m, info := hotMachine(t, []Disk{{Path: boot}}, hot)
	if info.Name != "vdb" || info.Slot != 2 {
		t.Fatalf("attached %+v", info)
	}
	want := slotConfig(m, info.Slot)
	snap := filepath.Join(dir, "snap")
	if err := m.Snapshot(snap); err != nil {
		t.Fatalf("snapshot with a hot-plugged disk: %v", err)
	}
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	m.Close()
	if hasOpen(t, hot) {
		t.Fatal("the closed machine still has the hot-plugged image open")
	}

	r, err := RestoreSnapshot(snap, nil)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer r.Close()
	disks := r.Disks()
	if len(disks) != 2 || disks[1] != info {
		t.Fatalf("restored disks %+v, want vda and %+v", disks, info)
	}
	if !hasOpen(t, hot) {
		t.Error("the restored machine did not reopen the hot-plugged image")
	}
	checkHotSlot(t, r, info.Slot, want)
	// The guest never read UP: the insertion is still to be reported.
	if sts := pioRead(r, pcihotplug.GPEBase, 2); sts != 1<<pcihotplug.GPEBit {
		t.Errorf("restored GPE0_STS %#x", sts)
	}
	if up := pioRead(r, pcihotplug.Base+pcihotplug.RegUp, 4); up != 1<<info.Slot {
		t.Errorf("restored UP %#x, want slot %d", up, info.Slot)
	}
	if _, err := r.AttachDisk(Disk{Path: hot}); !errors.Is(err, ErrDiskInUse) {
		t.Errorf("attaching the restored disk's image again: %v", err)
	}
	saved := counter(r)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
	waitCounter(t, r, saved+1000)
	checkDetach(t, r, info.Name, info.Slot, hot)
}

// TestHotplugRestoreRefusesBadState restores states whose hot-plugged
// disks cannot be: each is refused with an error, none panics.
func TestHotplugRestoreRefusesBadState(t *testing.T) {
	dir := t.TempDir()
	boot, hot := filepath.Join(dir, "boot.raw"), filepath.Join(dir, "hot.raw")
	newImage(t, boot, "raw", nil)
	newImage(t, hot, "raw", nil)
	m, _ := hotMachine(t, []Disk{{Path: boot}}, hot)
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	good, err := m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	mem := copyMemory(t, m.Memory())
	defer mem.Close()
	cfg := m.Config()
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	m.Close()
	for _, tc := range []struct {
		name   string
		mutate func(*HotDiskState)
		want   string
	}{
		{"slot of a boot disk", func(d *HotDiskState) { d.Slot = 1 }, "not hot-pluggable"},
		{"image gone", func(d *HotDiskState) { d.Disk.Path = filepath.Join(dir, "gone.raw") }, "must still be there"},
		{"the boot disk's image", func(d *HotDiskState) { d.Disk.Path = boot }, "already uses"},
		{"not a disk", func(d *HotDiskState) { d.Virtio.Device = nil }, "not a disk"},
		{"a boot disk's name", func(d *HotDiskState) { d.Name = "vda" }, "used twice"},
		{"other queues", func(d *HotDiskState) { d.Virtio.Transport.Queues = nil }, "queues"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := *good
			st.Hotplug.Disks = append([]HotDiskState(nil), good.Hotplug.Disks...)
			tc.mutate(&st.Hotplug.Disks[0])
			r, err := Restore(cfg, &st, copyMemory(t, mem))
			if err == nil {
				r.Close()
				t.Fatal("restored")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if hasOpen(t, hot) {
				t.Error("the failed restore left the image open")
			}
		})
	}
	// Two disks in one slot.
	st := *good
	st.Hotplug.Disks = []HotDiskState{good.Hotplug.Disks[0], good.Hotplug.Disks[0]}
	st.Hotplug.Disks[1].Name = "vdc"
	if r, err := Restore(cfg, &st, copyMemory(t, mem)); err == nil {
		r.Close()
		t.Error("restored two disks into one slot")
	}
}

// TestHotplugMigrationSharedStorage live-migrates a machine with a
// hot-plugged disk over loopback; the destination reopens the disk at its
// path in the same slot. Without boot disks the destination is prebuilt.
func TestHotplugMigrationSharedStorage(t *testing.T) {
	for _, withBoot := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-boot-disk", false: "prebuilt"}[withBoot], func(t *testing.T) {
			dir := t.TempDir()
			hot := filepath.Join(dir, "hot.qcow2")
			newImage(t, hot, "qcow2", []int64{2})
			var boot []Disk
			destCfg := Config{MemoryMiB: 64, CPUs: 1, DebugExit: true}
			if withBoot {
				boot = []Disk{{Path: filepath.Join(dir, "boot.raw")}}
				newImage(t, boot[0].Path, "raw", nil)
				destCfg.CPUs = 0
			}
			m, info := hotMachine(t, boot, hot)
			want := slotConfig(m, info.Slot)
			conn, dest := incomingLoopback(t, destCfg)
			if _, err := m.MigrateTo(context.Background(), conn, migration.Options{MaxDowntime: 50 * time.Millisecond}); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			conn.Close()
			res := <-dest
			if res.err != nil {
				t.Fatalf("incoming: %v", res.err)
			}
			r := res.m
			defer r.Close()
			if ex := waitExit(t, m); ex.Reason != ExitMigrated {
				t.Fatalf("source exit %v", ex.Reason)
			}
			last := counter(m)
			m.Close()
			disks := r.Disks()
			if len(disks) != len(boot)+1 || disks[len(boot)] != info {
				t.Fatalf("destination disks %+v, want the hot-plugged %+v", disks, info)
			}
			checkHotSlot(t, r, info.Slot, want)
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
			waitCounter(t, r, last+1000)
			checkDetach(t, r, info.Name, info.Slot, hot)
		})
	}
}

// readImage returns the whole virtual disk of the image at path.
func readImage(t *testing.T, path string) []byte {
	t.Helper()
	img, err := diskimage.Open(path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, img.VirtualSize())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHotplugMigrationMirrorsDisks migrates a machine with a boot disk and
// a hot-plugged one to a destination with two blank targets: the boot
// disk's first, then the hot-plugged one's. Both are copied, and the
// destination's hot-plugged disk is on its target, in the same slot.
func TestHotplugMigrationMirrorsDisks(t *testing.T) {
	dir := t.TempDir()
	boot, hot := filepath.Join(dir, "boot.qcow2"), filepath.Join(dir, "hot.raw")
	bootData := newImage(t, boot, "qcow2", []int64{0, 5})
	hotData := newImage(t, hot, "raw", []int64{1, 7, 9})
	bootT, hotT := filepath.Join(dir, "boot-target.raw"), filepath.Join(dir, "hot-target.qcow2")
	newImage(t, bootT, "raw", nil)
	newImage(t, hotT, "qcow2", nil)
	m, info := hotMachine(t, []Disk{{Path: boot}}, hot)

	// While a mirror runs, the disk set is fixed.
	m.mirrorList()
	if _, err := m.AttachDisk(Disk{Path: bootT}); !errors.Is(err, ErrHotplugMigrating) {
		t.Errorf("attach during a mirror: %v", err)
	}
	if err := m.DetachDisk("vdb"); !errors.Is(err, ErrHotplugMigrating) {
		t.Errorf("detach during a mirror: %v", err)
	}
	m.stopDiskTracking()
	// So is it while any migration logs dirty pages.
	if err := m.setDirtyLogging(true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AttachDisk(Disk{Path: bootT}); !errors.Is(err, ErrHotplugMigrating) {
		t.Errorf("attach during a migration: %v", err)
	}
	if err := m.setDirtyLogging(false); err != nil {
		t.Fatal(err)
	}

	// Too few targets: refused, naming the order.
	conn, dest := incomingLoopback(t, Config{MemoryMiB: 64, DebugExit: true, Disks: []Disk{{Path: bootT}}})
	if _, err := m.MigrateMirroringTo(context.Background(), conn, migration.Options{MaxDowntime: 50 * time.Millisecond}); err == nil {
		t.Fatal("mirroring two disks into one target succeeded")
	}
	conn.Close()
	if res := <-dest; res.err == nil || !strings.Contains(res.err.Error(), "disk sizes [8388608 8388608]") {
		t.Fatalf("destination with one target for two disks: %v", res.err)
	}
	for _, p := range []string{bootT, hotT} {
		os.Remove(p)
	}
	newImage(t, bootT, "raw", nil)
	newImage(t, hotT, "qcow2", nil)
	waitCounter(t, m, counter(m)+1000) // the source runs on

	conn, dest = incomingLoopback(t, Config{MemoryMiB: 64, DebugExit: true,
		Disks: []Disk{{Path: bootT, Format: "raw"}, {Path: hotT, Format: "qcow2"}}})
	if _, err := m.MigrateMirroringTo(context.Background(), conn, migration.Options{MaxDowntime: 50 * time.Millisecond}); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	conn.Close()
	res := <-dest
	if res.err != nil {
		t.Fatalf("incoming: %v", res.err)
	}
	r := res.m
	defer r.Close()
	if ex := waitExit(t, m); ex.Reason != ExitMigrated {
		t.Fatalf("source exit %v", ex.Reason)
	}
	m.Close()
	disks := r.Disks()
	if len(disks) != 2 || disks[0].Path != bootT || disks[1].Path != hotT || disks[1].Slot != info.Slot || !disks[1].Hotplugged {
		t.Fatalf("destination disks %+v", disks)
	}
	if !hasOpen(t, hotT) || hasOpen(t, hot) {
		t.Error("the destination does not use its own target for the hot-plugged disk")
	}
	r.Close()
	if !bytes.Equal(readImage(t, bootT), bootData) {
		t.Error("the boot disk's target differs from the source disk")
	}
	if !bytes.Equal(readImage(t, hotT), hotData) {
		t.Error("the hot-plugged disk's target differs from the source disk")
	}
}
