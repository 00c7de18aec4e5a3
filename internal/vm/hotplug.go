package vm

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio/blk"
)

// PCI hotplug of virtio-blk disks into a running machine. Every PCI slot
// left free at boot is hot-pluggable (the device manager, devmgr, reserves
// them and plugs devices in): it reads as absent until a disk is attached.
// The ACPI tables describe those slots (internal/x86/acpi) and the
// pcihotplug controller tells the guest about insertions and removal
// requests; the guest's _EJ0 completes a removal.

// Sentinel errors of disk hotplug.
var (
	// ErrNoFreeSlot is returned when every hot-pluggable slot is in use.
	ErrNoFreeSlot = errors.New("vm: no free PCI slot for another disk")
	// ErrNoDisk is returned for a disk name the machine does not have.
	ErrNoDisk = errors.New("vm: no such disk")
	// ErrNotHotplugged is returned when detaching a disk the machine
	// booted with: only hot-plugged disks sit in ejectable slots.
	ErrNotHotplugged = errors.New("vm: only hot-plugged disks can be detached")
	// ErrDiskInUse is returned when attaching an image the machine already has
	// open: two writers of one image corrupt it.
	ErrDiskInUse = errors.New("vm: the machine already uses this image")
	// ErrHotplugMigrating is returned when attaching or detaching a disk
	// while the machine migrates: the destination gets the disks (and, when
	// they are mirrored, the set of disks) the migration started with.
	ErrHotplugMigrating = errors.New("vm: disks cannot be attached or detached while the VM migrates: wait for the migration to end")
)

// DiskInfo describes one of the machine's disks.
type DiskInfo struct {
	Name       string `json:"name"` // vda, vdb, ...: the guest's usual name for it
	Path       string `json:"path"`
	ReadOnly   bool   `json:"readonly,omitempty"`
	Format     string `json:"format,omitempty"`
	Slot       int    `json:"pci_slot"`
	Hotplugged bool   `json:"hotplugged,omitempty"`
	// State is "attached", or "detaching" while the guest has not yet
	// ejected a disk it was asked to release.
	State string `json:"state"`
}

// hotplug is the machine's hotplug state.
type hotplug struct {
	ctrl  *pcihotplug.Controller
	mu    sync.Mutex
	disks map[int]*hotDisk // by slot: the disks plugged in
	seq   uint64           // attach order of the last disk attached
	// mirror is the list of disks a mirroring migration copies (boot
	// disks, then hot-plugged ones in attach order), fixed when it starts;
	// nil when none runs (mirror.go).
	mirror  []mirrorDisk
	ejected []*hotDisk // ejected while mirrored: closed when the mirror ends
}

// hotDisk is a hot-plugged disk.
type hotDisk struct {
	info  DiskInfo
	cfg   Disk // as attached: what a snapshot or migration reopens
	seq   uint64
	img   diskimage.Image // tracked for mirroring (mirror.go)
	dirty *dirtyBlocks
	dev   *blk.Device
	fn    *devmgr.Device // its virtio-pci function, in its slot
}

// setupHotplug has the device manager reserve every free PCI slot for
// hotplug and maps the GPE block and the hotplug registers.
func (m *Machine) setupHotplug() error {
	hp := &hotplug{disks: map[int]*hotDisk{}}
	mask, err := m.devs.Reserve()
	if err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	hp.ctrl = pcihotplug.New(mask, m.sciSource(sciGPE), m.ejectSlot)
	for _, r := range []struct {
		base, size uint64
		dev        interface {
			Read(uint64, []byte)
			Write(uint64, []byte)
		}
	}{
		{pcihotplug.GPEBase, pcihotplug.GPELen, hp.ctrl.GPEDevice()},
		{pcihotplug.Base, pcihotplug.Size, hp.ctrl.Device()},
	} {
		if err := m.pio.Register(r.base, r.size, r.dev); err != nil {
			return fmt.Errorf("vm: register hotplug registers at port %#x: %w", r.base, err)
		}
	}
	m.hp = hp
	return nil
}

// hotplugSlots returns the bitmap of hot-pluggable slots for the ACPI tables.
func (m *Machine) hotplugSlots() uint32 {
	if m.hp == nil {
		return 0
	}
	return m.hp.ctrl.Slots()
}

// diskName returns the usual guest name of the i-th virtio disk (vda, ..., vdz, vdaa, ...).
func diskName(i int) string {
	if i < 26 {
		return fmt.Sprintf("vd%c", 'a'+i)
	}
	return fmt.Sprintf("vd%c%c", 'a'+i/26-1, 'a'+i%26)
}

// Disks lists the machine's disks: those it booted with, then the
// hot-plugged ones in the order they were attached (the order in which a
// mirroring migration's destination takes its --disk targets).
func (m *Machine) Disks() []DiskInfo {
	var out []DiskInfo
	for i, d := range m.cfg.Disks {
		out = append(out, DiskInfo{Name: diskName(i), Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format, Slot: pci.FirstSlot + i, State: "attached"})
	}
	if m.hp == nil {
		return out
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	for _, hd := range m.hotDisks() {
		out = append(out, hd.info)
	}
	return out
}

// hotDisks returns the hot-plugged disks in attach order (hp.mu held, so
// that only a guest's eject can change the set meanwhile).
func (m *Machine) hotDisks() []*hotDisk {
	var out []*hotDisk
	for _, hd := range m.hp.disks {
		out = append(out, hd)
	}
	slices.SortFunc(out, func(a, b *hotDisk) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// AttachDisk opens d's image and plugs a virtio-blk disk for it into a
// free hot-pluggable slot; the guest is notified and probes it. Only Path,
// ReadOnly, Format, Direct and Serial of d are used.
func (m *Machine) AttachDisk(d Disk) (DiskInfo, error) {
	select {
	case <-m.done:
		return DiskInfo{}, ErrStopped
	default:
	}
	if m.hp == nil {
		return DiskInfo{}, ErrNoFreeSlot
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	if m.migrating() {
		return DiskInfo{}, ErrHotplugMigrating
	}
	slot, name := m.devs.FreeSlot(), ""
	if slot < 0 {
		return DiskInfo{}, ErrNoFreeSlot
	}
	names := map[string]bool{}
	for i := range m.cfg.Disks {
		names[diskName(i)] = true
	}
	for _, hd := range m.hp.disks {
		names[hd.info.Name] = true
	}
	for i := 0; name == ""; i++ {
		if !names[diskName(i)] {
			name = diskName(i)
		}
	}
	if err := m.checkNotInUse(d.Path); err != nil {
		return DiskInfo{}, err
	}
	d = Disk{Path: d.Path, ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format, Serial: d.Serial}
	hd, err := m.plugHotDisk(d, name, slot)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	if err := m.hp.ctrl.Insert(slot); err != nil {
		m.unplugHotDisk(slot)
		hd.close()
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	slog.Info("disk attached", "disk", name, "path", d.Path, "slot", slot)
	return hd.info, nil
}

// migrating reports whether a migration runs (hp.mu held): KVM logs
// dirty pages only then, and a mirror's disk list is fixed only then.
func (m *Machine) migrating() bool {
	m.mu.Lock()
	logging := m.slotFlags&kvm.MemLogDirtyPages != 0
	m.mu.Unlock()
	return logging || m.hp.mirror != nil
}

// plugHotDisk opens d's image and plugs a virtio-blk function for it into
// slot (devmgr.Manager.Plug), as the disk name; hp.mu held. The guest is
// not told.
func (m *Machine) plugHotDisk(d Disk, name string, slot int) (*hotDisk, error) {
	img, err := diskimage.Open(d.Path, diskimage.OpenOptions{ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format})
	if err != nil {
		return nil, err
	}
	img, dirty := track(img)
	serial := d.Serial
	if serial == "" {
		serial = name
	}
	dev, err := blk.New(img, blk.Options{ReadOnly: d.ReadOnly, Serial: serial, NumQueues: d.Queues})
	if err != nil {
		img.Close()
		return nil, err
	}
	fn, err := m.devs.Plug(slot, name, dev, img.Close)
	if err != nil {
		img.Close()
		return nil, err
	}
	m.hp.seq++
	hd := &hotDisk{img: img, dirty: dirty, dev: dev, fn: fn, cfg: d, seq: m.hp.seq, info: DiskInfo{Name: name, Path: d.Path,
		ReadOnly: d.ReadOnly, Format: d.Format, Slot: slot, Hotplugged: true, State: "attached"}}
	m.hp.disks[slot] = hd
	return hd, nil
}

// unplugHotDisk takes the disk out of slot (hp.mu held) and returns it,
// still open, or nil.
func (m *Machine) unplugHotDisk(slot int) *hotDisk {
	hd := m.hp.disks[slot]
	delete(m.hp.disks, slot)
	m.devs.Unplug(slot)
	return hd
}

// close stops the disk's device and closes its image.
func (hd *hotDisk) close() {
	if err := hd.fn.Close(); err != nil {
		slog.Warn("hot-plugged disk: close image", "disk", hd.info.Name, "path", hd.info.Path, "err", err)
	}
}

// checkNotInUse refuses a path that names an image one of the machine's
// disks has open (hp.mu held).
func (m *Machine) checkNotInUse(path string) error {
	same := func(p string) bool {
		if filepath.Clean(p) == filepath.Clean(path) {
			return true
		}
		a, errA := os.Stat(p)
		b, errB := os.Stat(path)
		return errA == nil && errB == nil && os.SameFile(a, b)
	}
	for _, d := range m.cfg.Disks {
		if same(d.Path) {
			return fmt.Errorf("%w: %s", ErrDiskInUse, path)
		}
	}
	for _, hd := range m.hp.disks {
		if same(hd.info.Path) {
			return fmt.Errorf("%w: %s is %s", ErrDiskInUse, path, hd.info.Name)
		}
	}
	return nil
}

// DetachDisk asks the guest to release the hot-plugged disk name. It
// returns once the request is made: the disk goes away when the guest
// ejects it (Disks shows it "detaching" until then). Asking again repeats
// the request.
func (m *Machine) DetachDisk(name string) error {
	select {
	case <-m.done:
		return ErrStopped
	default:
	}
	for i := range m.cfg.Disks {
		if diskName(i) == name {
			return fmt.Errorf("%w: %s was attached at boot", ErrNotHotplugged, name)
		}
	}
	if m.hp == nil {
		return fmt.Errorf("%w: %s", ErrNoDisk, name)
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	if m.migrating() {
		return ErrHotplugMigrating
	}
	for n, hd := range m.hp.disks {
		if hd.info.Name == name {
			hd.info.State = "detaching"
			return m.hp.ctrl.RequestRemoval(n)
		}
	}
	return fmt.Errorf("%w: %s", ErrNoDisk, name)
}

// ejectSlot removes the disk in slot: the guest ran its _EJ0. It runs on
// the vCPU thread that wrote the eject register, so the slot is empty
// before the guest's next instruction.
func (m *Machine) ejectSlot(slot int) {
	if !m.devs.IsHotSlot(slot) {
		return
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	hd := m.unplugHotDisk(slot)
	if hd == nil {
		return
	}
	if !m.deferClose(hd) {
		hd.close()
	}
	slog.Info("disk detached", "disk", hd.info.Name, "path", hd.info.Path, "slot", slot)
}

// closeHotplug releases the hot-plugged disks (the machine is closing).
func (m *Machine) closeHotplug() {
	if m.hp == nil {
		return
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	for slot := range m.hp.disks {
		m.unplugHotDisk(slot).close()
	}
}

// hotplugDiskStats returns the request counts of the hot-plugged disks, in attach order.
func (m *Machine) hotplugDiskStats() []DiskStats {
	if m.hp == nil {
		return nil
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	var out []DiskStats
	for _, hd := range m.hotDisks() {
		out = append(out, DiskStats{Name: hd.info.Name, Path: hd.info.Path, Stats: hd.dev.Stats()})
	}
	return out
}
