package vm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/legacy/acpipm"
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
	// ErrHotplugSave is returned when saving a machine with hot-plugged
	// disks, which snapshots and migrations do not carry yet.
	ErrHotplugSave = errors.New("vm: detach hot-plugged disks before a snapshot or migration")
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
}

// hotSlot is a hot-pluggable PCI slot: the pci.Device the bus holds for
// it, forwarding to the disk's transport while one is attached.
type hotSlot struct {
	mu   sync.RWMutex
	disk *hotDisk
}

// hotDisk is a hot-plugged disk.
type hotDisk struct {
	info DiskInfo
	img  diskimage.Image
	dev  *blk.Device
	tr   *pcitransport.Transport
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
// hot-plugged ones by slot.
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
	for n := pci.FirstSlot; n < pci.NumSlots; n++ {
		if s := m.hp.slots[n]; s != nil {
			s.mu.RLock()
			if s.disk != nil {
				out = append(out, s.disk.info)
			}
			s.mu.RUnlock()
		}
	}
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
	img, err := diskimage.Open(d.Path, diskimage.OpenOptions{ReadOnly: d.ReadOnly, Direct: d.Direct, Format: d.Format})
	if err != nil {
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	serial := d.Serial
	if serial == "" {
		serial = name
	}
	dev, err := blk.New(img, blk.Options{ReadOnly: d.ReadOnly, Serial: serial})
	if err != nil {
		img.Close()
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	tr, err := pcitransport.New(dev, m.mem, platform{m})
	if err != nil {
		img.Close()
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	hd := &hotDisk{img: img, dev: dev, tr: tr, info: DiskInfo{Name: name, Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format,
		Slot: slot, Hotplugged: true, State: "attached"}}
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
		tr.Close()
		img.Close()
		return DiskInfo{}, fmt.Errorf("vm: attach disk %s: %w", d.Path, err)
	}
	slog.Info("disk attached", "disk", name, "path", d.Path, "slot", slot)
	return hd.info, nil
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
	s.mu.Lock()
	hd := s.disk
	s.disk = nil
	s.mu.Unlock()
	if hd == nil {
		return
	}
	hd.tr.Close()
	if err := hd.img.Close(); err != nil {
		slog.Warn("disk detach: close image", "disk", hd.info.Name, "path", hd.info.Path, "err", err)
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
			hd.tr.Close()
			hd.img.Close()
		}
	}
}

// hotplugSaveCheck returns ErrHotplugSave while a hot-plugged disk is
// attached: the machine state does not describe hot-plugged devices yet,
// so a snapshot or migration would lose them under the guest's feet.
func (m *Machine) hotplugSaveCheck() error {
	if m.hp == nil {
		return nil
	}
	for _, s := range m.hp.slots {
		if !s.empty() {
			return ErrHotplugSave
		}
	}
	return nil
}

// restoreHotplug re-arms the hotplug GPE of a restored machine. The
// machine state does not carry the GPE block; its only guest-set bit is
// GPE0_EN for hotplug, which every ACPI OS sets once it handles SCIs (the
// DSDT has an _E01 method). So the GPE is enabled when the saved guest had
// unmasked the SCI in the I/O APIC (or enabled its ACPI power button): an
// OS that did not is not yet running ACPI, and ACPICA clears the GPE
// registers when it starts.
func (m *Machine) restoreHotplug(st *MachineState) {
	if m.hp == nil || !sciInUse(st) {
		return
	}
	m.hp.ctrl.GPEDevice().Write(2, []byte{1 << pcihotplug.GPEBit})
}

// Layout of struct kvm_ioapic_state (Linux arch/x86/include/uapi/asm/kvm.h):
// base_address, ioregsel, id, irr, pad, then 24 64-bit redirection entries
// whose bit 16 masks the pin (82093AA I/O APIC datasheet, 3.2.4).
const (
	ioapicRedirTable = 24
	ioapicMasked     = 1 << 16
)

// sciInUse reports whether the saved guest handles SCIs: its I/O APIC pin
// for the SCI is unmasked, or it enabled the ACPI power button event.
func sciInUse(st *MachineState) bool {
	if st.PM.Enable&acpipm.PwrBtnSts != 0 { // PWRBTN_EN is PWRBTN_STS's bit
		return true
	}
	for _, c := range st.IRQChips {
		if c.ChipID != kvm.IRQChipIOAPIC {
			continue
		}
		off := ioapicRedirTable + 8*sciIRQ
		return binary.LittleEndian.Uint64(c.Chip[off:off+8])&ioapicMasked == 0
	}
	return false
}

// hotplugDiskStats returns the request counts of the hot-plugged disks, by slot.
func (m *Machine) hotplugDiskStats() []DiskStats {
	if m.hp == nil {
		return nil
	}
	var out []DiskStats
	for n := pci.FirstSlot; n < pci.NumSlots; n++ {
		s := m.hp.slots[n]
		if s == nil {
			continue
		}
		s.mu.RLock()
		if hd := s.disk; hd != nil {
			out = append(out, DiskStats{Name: hd.info.Name, Path: hd.info.Path, Stats: hd.dev.Stats()})
		}
		s.mu.RUnlock()
	}
	return out
}
