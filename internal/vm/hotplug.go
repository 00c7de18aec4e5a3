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

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// PCI hotplug of virtio-blk disks into a running machine. Every PCI slot
// left free at boot is hot-pluggable: it holds a hotSlot, which reads as
// absent until a disk is attached. The ACPI tables describe those slots
// (internal/x86/acpi) and the pcihotplug controller tells the guest about
// insertions and removal requests; the guest's _EJ0 completes a removal.

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
	slots map[int]*hotSlot
	seq   uint64 // attach order of the last disk attached
	// mirror is the list of disks a mirroring migration copies (boot
	// disks, then hot-plugged ones in attach order), fixed when it starts;
	// nil when none runs (mirror.go).
	mirror  []mirrorDisk
	ejected []*hotDisk // ejected while mirrored: closed when the mirror ends
}

// hotSlot is a hot-pluggable PCI slot: the pci.Device the bus holds for
// it, forwarding to the disk's transport while one is attached.
type hotSlot struct {
	mu   sync.RWMutex
	disk *hotDisk
}

// hotDisk is a hot-plugged disk.
type hotDisk struct {
	info  DiskInfo
	cfg   Disk // as attached: what a snapshot or migration reopens
	seq   uint64
	img   diskimage.Image // tracked for mirroring (mirror.go)
	dirty *dirtyBlocks
	dev   *blk.Device
	tr    *pcitransport.Transport
}

func (s *hotSlot) ConfigRead(offset uint16, data []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.disk == nil {
		for i := range data {
			data[i] = 0xFF // no device: the read master-aborts
		}
		return
	}
	s.disk.tr.ConfigRead(offset, data)
}

func (s *hotSlot) ConfigWrite(offset uint16, data []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.disk != nil {
		s.disk.tr.ConfigWrite(offset, data)
	}
}

// setupHotplug fills every free PCI slot with an empty hot-pluggable slot
// and maps the GPE block and the hotplug registers.
func (m *Machine) setupHotplug() error {
	hp := &hotplug{slots: map[int]*hotSlot{}}
	var mask uint32
	for n := pci.FirstSlot; n < pci.NumSlots; n++ {
		s := &hotSlot{}
		if err := m.pci.AddDevice(n, s); err != nil {
			if errors.Is(err, pci.ErrSlotUsed) {
				continue
			}
			return fmt.Errorf("vm: hotplug slot %d: %w", n, err)
		}
		hp.slots[n] = s
		mask |= 1 << n
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
	for _, s := range m.hp.slots {
		s.mu.RLock()
		if s.disk != nil {
			out = append(out, s.disk)
		}
		s.mu.RUnlock()
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
	slot, name := -1, ""
	for n := pci.FirstSlot; n < pci.NumSlots && slot < 0; n++ {
		if s := m.hp.slots[n]; s != nil && s.empty() {
			slot = n
		}
	}
	if slot < 0 {
		return DiskInfo{}, ErrNoFreeSlot
	}
	names := map[string]bool{}
	for i := range m.cfg.Disks {
		names[diskName(i)] = true
	}
	for _, s := range m.hp.slots {
		if di, ok := s.info(); ok {
			names[di.Name] = true
		}
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
	hd, err := m.openHotDisk(d, name, slot)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	// The BAR stays unassigned: the guest's PCI core sizes and places it
	// when it scans the slot, as for any hot-added function.
	s := m.hp.slots[slot]
	s.mu.Lock()
	s.disk = hd
	s.mu.Unlock()
	if err := m.hp.ctrl.Insert(slot); err != nil {
		s.mu.Lock()
		s.disk = nil
		s.mu.Unlock()
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

// openHotDisk opens d's image and makes the virtio-blk function for it,
// as the disk name in slot; hp.mu held. It is not yet in its slot.
func (m *Machine) openHotDisk(d Disk, name string, slot int) (*hotDisk, error) {
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
	tr, err := pcitransport.New(dev, m.mem, platform{m})
	if err != nil {
		img.Close()
		return nil, err
	}
	m.hp.seq++
	return &hotDisk{img: img, dirty: dirty, dev: dev, tr: tr, cfg: d, seq: m.hp.seq, info: DiskInfo{Name: name, Path: d.Path,
		ReadOnly: d.ReadOnly, Format: d.Format, Slot: slot, Hotplugged: true, State: "attached"}}, nil
}

// close stops the disk's device and closes its image.
func (hd *hotDisk) close() {
	hd.tr.Close()
	if err := hd.img.Close(); err != nil {
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
	for _, s := range m.hp.slots {
		if di, ok := s.info(); ok && same(di.Path) {
			return fmt.Errorf("%w: %s is %s", ErrDiskInUse, path, di.Name)
		}
	}
	return nil
}

func (s *hotSlot) empty() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.disk == nil
}

func (s *hotSlot) info() (DiskInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.disk == nil {
		return DiskInfo{}, false
	}
	return s.disk.info, true
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
	for n, s := range m.hp.slots {
		s.mu.Lock()
		found := s.disk != nil && s.disk.info.Name == name
		if found {
			s.disk.info.State = "detaching"
		}
		s.mu.Unlock()
		if found {
			return m.hp.ctrl.RequestRemoval(n)
		}
	}
	return fmt.Errorf("%w: %s", ErrNoDisk, name)
}

// ejectSlot removes the disk in slot: the guest ran its _EJ0. It runs on
// the vCPU thread that wrote the eject register, so the slot is empty
// before the guest's next instruction.
func (m *Machine) ejectSlot(slot int) {
	s := m.hp.slots[slot]
	if s == nil {
		return
	}
	m.hp.mu.Lock()
	defer m.hp.mu.Unlock()
	s.mu.Lock()
	hd := s.disk
	s.disk = nil
	s.mu.Unlock()
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
	for _, s := range m.hp.slots {
		s.mu.Lock()
		hd := s.disk
		s.disk = nil
		s.mu.Unlock()
		if hd != nil {
			hd.close()
		}
	}
}

// quiesceHotplug stops the hot-plugged disks' I/O (Pause), as the boot
// disks' is: a snapshot or handover must see no request in flight.
func (m *Machine) quiesceHotplug() { m.eachHotTransport((*pcitransport.Transport).Quiesce) }

// unquiesceHotplug restarts what quiesceHotplug stopped (Resume).
func (m *Machine) unquiesceHotplug() { m.eachHotTransport((*pcitransport.Transport).Unquiesce) }

// eachHotTransport calls f on the transport of every hot-plugged disk. It
// takes only the slots' locks: Pause calls it with the machine's lock held.
func (m *Machine) eachHotTransport(f func(*pcitransport.Transport)) {
	if m.hp == nil {
		return
	}
	for _, s := range m.hp.slots {
		s.mu.RLock()
		if s.disk != nil {
			f(s.disk.tr)
		}
		s.mu.RUnlock()
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
