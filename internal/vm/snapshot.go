package vm

import (
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/snapshot"
)

// Snapshot section names and versions. Version 1 of both was gob; version 2
// is the binary encoding of statecodec.go. The machine section's version
// is its StateVersion (3 and 4 are read).
const (
	sectionConfig  = "config"
	sectionMachine = "machine"
	configVersion  = 2
)

// SavedConfig is the part of Config a snapshot keeps to rebuild the machine.
// Disks are reopened at the same paths: the image files must still be there
// (shared storage, or the same host) and unchanged since the snapshot.
type SavedConfig struct {
	CPUs      int
	MemoryMiB uint64
	Disks     []Disk
	RNG       bool
	Nets      []Net
	Vsock     *Vsock
	Balloon   bool
	DebugExit bool
	Template  string
	// CPUFeatures are the guest's CPU features (Machine.CPUFeatures); nil
	// in snapshots older than them.
	CPUFeatures []string
}

// Snapshot writes the machine's full state and guest RAM to dir (which must
// not exist), pausing the machine meanwhile and flushing its disks so that
// they match the saved state. A running machine runs on afterwards. A failed
// snapshot leaves nothing behind.
func (m *Machine) Snapshot(dir string) (err error) {
	if err := m.postCopyBusy("snapshot"); err != nil {
		return err
	}
	m.mu.Lock()
	running := m.started && !m.pauseReq && !m.stopping
	m.mu.Unlock()
	if running {
		if err := m.Pause(); err != nil {
			return err
		}
		defer m.Resume()
	}
	st, err := m.SaveState()
	if err != nil {
		return err
	}
	for _, img := range m.images {
		if err := img.Flush(); err != nil {
			return fmt.Errorf("vm: snapshot: flush disk: %w", err)
		}
	}
	w, err := snapshot.Create(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	sc := m.savedConfig()
	if err := w.AddSection(sectionConfig, configVersion, EncodeConfig(&sc)); err != nil {
		return err
	}
	if err := w.AddSection(sectionMachine, StateVersion, EncodeState(st)); err != nil {
		return err
	}
	var regions []snapshot.Region
	for _, r := range m.mem.Regions() {
		regions = append(regions, snapshot.Region{GPA: r.GPA, Data: r.Host})
	}
	if err := w.WriteMemory(regions); err != nil {
		return err
	}
	return w.Commit()
}

// RestoreSnapshot builds a machine from the snapshot in dir. Guest RAM is
// mapped copy-on-write from the snapshot's memory file, so the machine is
// ready in milliseconds and the snapshot stays untouched. Call Start to run it.
func RestoreSnapshot(dir string, console io.Writer) (*Machine, error) {
	return RestoreSnapshotVars(dir, console, nil)
}

// RestoreSnapshotVars is RestoreSnapshot for a machine that may have booted
// through UEFI: its saved variables go into vars, the VM's variable file,
// which its firmware then keeps writing (nil: a scratch file).
func RestoreSnapshotVars(dir string, console io.Writer, vars *os.File) (*Machine, error) {
	s, err := snapshot.Open(dir)
	if err != nil {
		return nil, err
	}
	sc, st, err := readSnapshotState(dir, s)
	if err != nil {
		return nil, err
	}
	regions, _, err := s.MapMemory()
	if err != nil {
		return nil, err
	}
	var gm []guestmem.Region
	for _, r := range regions {
		gm = append(gm, guestmem.Region{GPA: r.GPA, Host: r.Data})
	}
	mem := guestmem.FromRegions(gm) // its Close unmaps the regions
	cfg := Config{CPUs: sc.CPUs, MemoryMiB: sc.MemoryMiB, Disks: sc.Disks, RNG: sc.RNG, Nets: sc.Nets,
		Vsock: sc.Vsock, Balloon: sc.Balloon, DebugExit: sc.DebugExit, Template: sc.Template, CPUFeatures: sc.CPUFeatures, Console: console}
	done, err := withSavedFirmware(&cfg, st, vars)
	if err != nil {
		mem.Close()
		return nil, err
	}
	defer done()
	m, err := Restore(cfg, st, mem) // on failure Restore unmaps mem
	if err != nil {
		return nil, err
	}
	m.announceNets() // it may now be on another host
	return m, nil
}

// readSnapshotState decodes a snapshot's config and machine sections,
// refusing (with ErrStateFormat) sections of versions this govisor does not
// read, such as the gob encoding of older govisors.
func readSnapshotState(dir string, s *snapshot.Snapshot) (*SavedConfig, *MachineState, error) {
	section := func(name string, want uint32, alsoReads ...uint32) ([]byte, error) {
		v, p, err := s.Section(name)
		if err != nil {
			return nil, err
		}
		if v != want && !slices.Contains(alsoReads, v) {
			return nil, fmt.Errorf("%w: snapshot %s has %s version %d, this govisor reads version %d: restore it with the govisor that made it, or boot the VM afresh and take a new snapshot",
				ErrStateFormat, dir, name, v, want)
		}
		return p, nil
	}
	p, err := section(sectionConfig, configVersion)
	if err != nil {
		return nil, nil, err
	}
	sc, err := DecodeConfig(p)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	if p, err = section(sectionMachine, StateVersion, stateVersionV4, stateVersionV3); err != nil {
		return nil, nil, err
	}
	st, err := DecodeState(p)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	return sc, st, nil
}

// SnapshotConfig reads the machine config the snapshot in dir keeps
// (CPUs, memory, the disks' paths...) without restoring it: the jail reads
// it to give a restored VMM the disks it will reopen.
func SnapshotConfig(dir string) (*SavedConfig, error) {
	s, err := snapshot.Open(dir)
	if err != nil {
		return nil, err
	}
	sc, _, err := readSnapshotState(dir, s)
	return sc, err
}

// SnapshotDisks lists the disk images a restore of the snapshot in dir
// reopens: the machine's and the hot-plugged ones (the jail binds them in).
func SnapshotDisks(dir string) ([]string, error) {
	s, err := snapshot.Open(dir)
	if err != nil {
		return nil, err
	}
	sc, st, err := readSnapshotState(dir, s)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, d := range sc.Disks {
		paths = append(paths, d.Path)
	}
	for _, d := range st.Hotplug.Disks {
		paths = append(paths, d.Disk.Path)
	}
	return paths, nil
}
