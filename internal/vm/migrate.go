package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/virtio/netdev"
)

// ExitMigrated is the exit reason of a source VM whose guest now runs on
// the destination.
const ExitMigrated ExitReason = ExitError + 1

// migrationState is what the source sends with the final dirty pages: the
// machine description and its state.
type migrationState struct {
	Config  SavedConfig
	Machine MachineState
}

// MigrateTo live-migrates the running machine to a `govisor run --incoming`
// VMM listening at conn's peer (pre-copy: memory is copied while the guest
// runs, then the rest with the device state during a short pause). Disks
// must be on storage both hosts share. On success the machine stops with
// ExitMigrated; on failure it keeps running, as it was.
func (m *Machine) MigrateTo(ctx context.Context, conn net.Conn, opts migration.Options) (migration.Stats, error) {
	return m.migrate(ctx, conn, opts, false)
}

// MigrateMirroringTo is MigrateTo for hosts that do not share storage: every
// disk is copied to the destination's own disks (its --disk images, blank
// and of the same sizes) in the same pre-copy rounds as memory.
func (m *Machine) MigrateMirroringTo(ctx context.Context, conn net.Conn, opts migration.Options) (migration.Stats, error) {
	return m.migrate(ctx, conn, opts, true)
}

func (m *Machine) migrate(ctx context.Context, conn net.Conn, opts migration.Options, mirror bool) (migration.Stats, error) {
	if err := m.postCopyBusy("migration"); err != nil {
		return migration.Stats{}, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return migration.Stats{}, errors.New("vm: migration of a closed machine")
	}
	m.memReaders.Add(1)
	m.mu.Unlock()
	defer m.memReaders.Done()
	// A guest that stops before the handover (it rebooted, powered off or
	// failed: its VMM closes this machine) ends the migration: there is
	// nothing left to move, and Close waits for this to return.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stopped := errors.New("vm: the guest stopped during the migration")
	go func() {
		select {
		case <-m.done:
			cancel(stopped)
		case <-ctx.Done():
		}
	}()
	if err := m.setDirtyLogging(true); err != nil {
		return migration.Stats{}, err
	}
	// Read what SaveState needs from KVM once, before the guest pauses.
	if err := m.loadMSRIndex(); err != nil {
		return migration.Stats{}, err
	}
	var src migration.Source = &migrationSource{m: m, stateBuf: m.warmEncode()}
	if mirror {
		if m.diskCount() == 0 {
			return migration.Stats{}, errors.New("vm: disk mirroring asked for, but the VM has no disks")
		}
		src = mirroringSource{src.(*migrationSource)}
		defer m.stopDiskTracking()
	}
	stats, err := migration.Send(ctx, conn, src, opts)
	if errors.Is(err, migration.ErrPostCopy) {
		// The VM ran on the destination, which now lacks pages and stops:
		// this copy is stale (its disks moved on without it) and must never
		// run again.
		m.stop(Exit{Reason: ExitError, Detail: fmt.Sprintf("post-copy to %s failed: %v", conn.RemoteAddr(), err)})
		return stats, err
	}
	if err != nil {
		m.setDirtyLogging(false)
		if context.Cause(ctx) == stopped {
			return stats, fmt.Errorf("%w (%s): %v", stopped, m.Wait().Reason, err)
		}
		return stats, err
	}
	m.stop(Exit{Reason: ExitMigrated, Detail: fmt.Sprintf("migrated to %s", conn.RemoteAddr())})
	return stats, nil
}

// warmEncode runs the device state's encoder once on a state shaped like
// the machine's, before the guest pauses, and returns a buffer for the real
// one: the handover then neither faults in the encoder's code nor grows
// the buffer.
func (m *Machine) warmEncode() []byte {
	st := MachineState{VCPUs: make([]VCPUState, len(m.runners)), Virtio: make([]VirtioState, len(m.devs.Devices()))}
	for i := range st.VCPUs {
		st.VCPUs[i].XSave, st.VCPUs[i].XCRs = new(kvm.XSave), new(kvm.XCRs)
		st.VCPUs[i].MSRs = make([]kvm.MSR, len(m.msrIndex))
	}
	buf := encodeMigrationState(make([]byte, 0, 64<<10+16<<10*len(m.runners)), &migrationState{Config: m.savedConfig(), Machine: st})
	return buf[:0]
}

// setDirtyLogging turns KVM's dirty-page log on or off for every RAM slot.
func (m *Machine) setDirtyLogging(on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	flags := uint32(0)
	if on {
		flags = kvm.MemLogDirtyPages
	}
	if m.slotFlags == flags {
		return nil
	}
	m.slotFlags = flags
	return m.mapSlots()
}

// migrationSource adapts a running Machine to migration.Source.
type migrationSource struct {
	m        *Machine
	bitmaps  [][]byte
	stateBuf []byte // the device state's encoding
}

func (s *migrationSource) Regions() []migration.Region {
	var out []migration.Region
	for _, r := range s.m.mem.Regions() {
		out = append(out, migration.Region{GPA: r.GPA, Size: uint64(len(r.Host))})
	}
	return out
}

func (s *migrationSource) ReadMemory(gpa uint64, p []byte) error {
	_, err := s.m.mem.ReadAt(p, int64(gpa))
	return err
}

// DirtyBitmap merges KVM's log of vCPU writes with the VMM's own (device
// writes to guest memory, which KVM does not see).
func (s *migrationSource) DirtyBitmap() ([][]uint64, error) {
	regions := s.m.mem.Regions()
	if s.bitmaps == nil {
		for _, r := range regions {
			pages := (uint64(len(r.Host)) + guestmem.PageSize - 1) / guestmem.PageSize
			s.bitmaps = append(s.bitmaps, make([]byte, (pages+63)/64*8))
		}
	}
	vmm := s.m.mem.TakeDirty()
	out := make([][]uint64, len(regions))
	for i := range regions {
		if err := s.m.kvm.DirtyLog(uint32(i), s.bitmaps[i]); err != nil {
			return nil, err
		}
		out[i] = make([]uint64, len(s.bitmaps[i])/8)
		for w := range out[i] {
			out[i][w] = binary.LittleEndian.Uint64(s.bitmaps[i][w*8:])
			if w < len(vmm[i]) {
				out[i][w] |= vmm[i][w]
			}
		}
	}
	return out, nil
}

// NeverWritten lets the full copy skip pages the guest never touched
// (migration.ZeroHinter): they read as zero on both sides. Pages touched
// after the hint are in the next round's dirty log.
func (s *migrationSource) NeverWritten(i int) []uint64 { return s.m.mem.NeverWritten(i) }

func (s *migrationSource) Pause() error { return s.m.Pause() }
func (s *migrationSource) Resume() error {
	s.m.thawVsock()
	s.m.Resume()
	return nil
}

func (s *migrationSource) DeviceState() ([]byte, error) {
	s.m.freezeVsock() // see migrate_vsock.go
	st, err := s.m.SaveState()
	if err != nil {
		return nil, err
	}
	for _, img := range s.m.images {
		if err := img.Flush(); err != nil {
			return nil, fmt.Errorf("vm: flush disk before handover: %w", err)
		}
	}
	s.stateBuf = encodeMigrationState(s.stateBuf, &migrationState{Config: s.m.savedConfig(), Machine: *st})
	return s.stateBuf, nil
}

// savedConfig is the machine description a snapshot or migration carries.
func (m *Machine) savedConfig() SavedConfig {
	return SavedConfig{CPUs: m.cfg.CPUs, MemoryMiB: m.cfg.MemoryMiB, Disks: m.cfg.Disks, RNG: m.cfg.RNG,
		Nets: m.cfg.Nets, Vsock: m.cfg.Vsock, Balloon: m.cfg.Balloon, DebugExit: m.cfg.DebugExit, Template: m.tmpl,
		CPUFeatures: m.cpuFeats}
}

// Incoming receives a live migration on conn and returns the machine, ready
// to Start. cfg gives the memory size (the source's, checked in the
// handshake) and the console. When cfg also gives the vCPU count and the
// VM has no disks, the KVM VM, vCPUs and devices are built before the
// migration starts, as QEMU does, so that the guest's downtime does not
// include them; they must then match the source's, or the migration is
// refused. Disks in cfg are mirror targets: blank images that receive the
// source's disks (MigrateMirroringTo). Without them the destination opens
// the source's disk paths (shared storage) at the handover, once the source
// has flushed them. On error nothing is left behind and the source keeps
// running. Incoming owns conn: it is closed when the migration is over,
// which with post-copy is after Incoming returned, once every page arrived.
func Incoming(ctx context.Context, conn net.Conn, cfg Config) (_ *Machine, err error) {
	defer func() {
		if err != nil {
			conn.Close() // migration.Receive closes it too; the earlier failures do not reach it
		}
	}()
	d := &migrationDest{cfg: cfg}
	var dst migration.Destination = d
	if len(cfg.Disks) > 0 {
		imgs, sizes, err := openMirrorTargets(cfg.Disks)
		if err != nil {
			return nil, err
		}
		md := &mirrorDest{migrationDest: d, imgs: imgs, sizes: sizes}
		defer md.closeTargets()
		dst = md
	}
	if cfg.CPUs > 0 && len(cfg.Disks) == 0 {
		m, err := build(cfg, true, nil)
		if err != nil {
			return nil, err
		}
		d.m, d.mem, d.prebuilt = m, m.mem, true
		m.warmCommit()
	} else {
		mem, err := guestmem.New(ramLayout(cfg.MemoryMiB))
		if err != nil {
			return nil, err
		}
		d.mem = mem
	}
	if _, err := migration.Receive(ctx, conn, dst); err != nil {
		d.discard()
		return nil, err
	}
	if d.m == nil || !d.committed {
		d.discard()
		return nil, errors.New("vm: migration finished without device state")
	}
	d.m.announceNets()
	d.m.thawVsock()
	return d.m, nil
}

// warmCommit runs a prebuilt destination's commit path once on the
// machine's own fresh state (which the migrated state then replaces), so
// that the handover does not pay for first use: code pages faulted in, heap
// grown, KVM's per-vCPU buffers allocated. Measured on kvm_pvm, a cold
// commit took ~0.2 ms more. Failures do not matter here: the real commit
// reports its own.
func (m *Machine) warmCommit() {
	st, err := m.SaveState()
	if err != nil {
		return
	}
	var ms migrationState
	if decodeMigrationState(encodeMigrationState(nil, &migrationState{Config: m.savedConfig(), Machine: *st}), &ms) != nil {
		return
	}
	for i, r := range m.runners {
		if i < len(ms.Machine.VCPUs) {
			_ = restoreVCPU(r.c, ms.Machine.VCPUs[i])
		}
	}
}

// migrationDest is the receiving machine: its memory from the start, the
// rest built before (prebuilt) or when the device state arrives.
type migrationDest struct {
	mu        sync.Mutex
	cfg       Config
	mem       *guestmem.Memory
	m         *Machine
	prebuilt  bool
	committed bool
	files     []*os.File // handed over by a same-host source (migrate_vsock.go)
	pc        *postCopy  // armed post-copy (postcopy.go)
}

func (d *migrationDest) Regions() []migration.Region {
	var out []migration.Region
	for _, r := range d.mem.Regions() {
		out = append(out, migration.Region{GPA: r.GPA, Size: uint64(len(r.Host))})
	}
	return out
}

func (d *migrationDest) WriteMemory(gpa uint64, p []byte) error {
	_, err := d.mem.WriteAt(p, int64(gpa))
	return err
}

func (d *migrationDest) Commit(state []byte) error { return d.commit(state, nil) }

// commit loads the state; targets, if given, replace the source's disk
// paths and formats (mirrored disks), keeping its device settings.
func (d *migrationDest) commit(state []byte, targets []Disk) error {
	var ms migrationState
	if err := decodeMigrationState(state, &ms); err != nil {
		return err
	}
	d.attachFiles(&ms)
	defer d.dropFiles()
	sc := ms.Config
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prebuilt && len(sc.Disks) > 0 && targets == nil {
		// The source's disks are on shared storage: they may be opened only
		// now that the source has flushed them, so the machine is built
		// anew around the memory already received.
		pm := d.m
		pm.mem = nil
		pm.Close()
		d.m, d.prebuilt = nil, false
	}
	if d.prebuilt {
		mine := d.m.savedConfig()
		if mine.CPUs != sc.CPUs || mine.RNG != sc.RNG || mine.Balloon != sc.Balloon || len(mine.Nets) != len(sc.Nets) ||
			(mine.Vsock == nil) != (sc.Vsock == nil) || len(sc.Disks) != 0 || mine.DebugExit != sc.DebugExit {
			return fmt.Errorf("vm: the destination was started as %+v but the source VM is %+v: start it with the same devices", mine, sc)
		}
		if err := d.m.restoreState(&ms.Machine); err != nil {
			return err
		}
		d.committed = true
		return nil
	}
	disks := sc.Disks
	if targets != nil {
		if len(targets) != len(sc.Disks) {
			return fmt.Errorf("vm: the source mirrors %d disks, the destination was given %d", len(sc.Disks), len(targets))
		}
		disks = make([]Disk, len(targets))
		for i, t := range targets {
			disks[i] = sc.Disks[i]
			disks[i].Path, disks[i].Format = t.Path, t.Format
		}
	}
	// The destination's own TAPs and vsock socket, when it names them: on
	// another host (or beside the source on this one) the source's are not
	// there to take.
	nets, vs := sc.Nets, sc.Vsock
	if len(d.cfg.Nets) > 0 {
		if len(d.cfg.Nets) != len(sc.Nets) {
			return fmt.Errorf("vm: the source VM has %d network interfaces, the destination was given %d", len(sc.Nets), len(d.cfg.Nets))
		}
		nets = d.cfg.Nets
	}
	if d.cfg.Vsock != nil {
		if sc.Vsock == nil || d.cfg.Vsock.CID != sc.Vsock.CID {
			return fmt.Errorf("vm: the destination's vsock %+v does not match the source's %+v", d.cfg.Vsock, sc.Vsock)
		}
		vs = d.cfg.Vsock
	}
	cfg := Config{CPUs: sc.CPUs, MemoryMiB: sc.MemoryMiB, Disks: disks, RNG: sc.RNG, Nets: nets,
		Vsock: vs, Balloon: sc.Balloon, DebugExit: sc.DebugExit, Template: sc.Template, CPUFeatures: sc.CPUFeatures,
		Console: d.cfg.Console}
	done, err := withSavedFirmware(&cfg, &ms.Machine, d.cfg.FirmwareVars)
	if err != nil {
		return err
	}
	defer done()
	m, err := Restore(cfg, &ms.Machine, d.mem)
	d.mem = nil // Restore owns it now, even on failure
	if err != nil {
		return err
	}
	d.m, d.committed = m, true
	return nil
}

// announceNets asks the guest to send gratuitous packets on every network
// interface (virtio 1.2 5.1.6.5.4), so that switches learn where its MACs
// went after a migration or a restore on another host.
func (m *Machine) announceNets() {
	for _, d := range m.devs.Devices() {
		if n, ok := d.Dev.(*netdev.Device); ok {
			n.Announce()
		}
	}
}

func (d *migrationDest) discard() {
	d.dropFiles()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m != nil {
		d.m.Close() // also unmaps a prebuilt machine's memory
		d.m = nil
	} else if d.mem != nil {
		d.mem.Close()
	}
	d.mem = nil
}
