package vm

import (
	"errors"
	"fmt"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/legacy/acpipm"
	"github.com/govisor/govisor/internal/legacy/cmosrtc"
	"github.com/govisor/govisor/internal/legacy/i8042"
	"github.com/govisor/govisor/internal/legacy/uart8250"
	"github.com/govisor/govisor/internal/pci"
)

// StateVersion is the version of MachineState and of its encoding
// (statecodec.go). Version 1 was gob; version 3 added the hotplug
// controller and the hot-plugged disks (Hotplug); version 4 encodes each
// virtio device's state under its kind (virtio.RegisterState) instead of
// one presence flag per kind there was; version 5 adds the firmware's
// state (Firmware).
const StateVersion = 5

// stateVersionV3 is the oldest version a restore still reads (snapshots
// of govisors before version 4); other versions are refused.
const stateVersionV3 = 3

// stateVersionV4 is the version before firmware state, read as a kernel
// boot's.
const stateVersionV4 = 4

// readableStateVersion reports whether a restore reads state version v.
func readableStateVersion(v int) bool {
	return v == StateVersion || v == stateVersionV4 || v == stateVersionV3
}

// VCPUState is what KVM holds for one vCPU (Documentation/virt/kvm/api.rst,
// the GET/SET pairs Firecracker and QEMU save for migration).
type VCPUState struct {
	Regs    kvm.Regs
	Sregs   kvm.Sregs
	FPU     kvm.FPU
	XSave   *kvm.XSave // nil where KVM has no XSAVE support
	XCRs    *kvm.XCRs
	MSRs    []kvm.MSR
	LAPIC   kvm.LAPICState
	MPState uint32
	Events  kvm.VCPUEvents
}

// VirtioState is one virtio-pci function: its transport's and its
// device's state (the device manager's, devmgr.State).
type VirtioState = devmgr.State

// MachineState is a paused machine's complete state, apart from guest RAM.
type MachineState struct {
	Version  int
	VCPUs    []VCPUState
	IRQChips []kvm.IRQChip // PIC master, PIC slave, IOAPIC
	PIT      kvm.PITState2
	Clock    kvm.ClockData
	UART     uart8250.State
	I8042    i8042.State
	RTC      cmosrtc.State
	PM       acpipm.State
	PCI      pci.BusState
	Virtio   []VirtioState
	Hotplug  HotplugState // hotplug_save.go
	// Firmware is nil for a machine that booted a kernel (firmware_state.go).
	Firmware *FirmwareState
}

// ErrNotPaused is returned when saving a machine whose vCPUs are running.
var ErrNotPaused = errors.New("vm: pause the machine before saving its state")

// SaveState captures the machine's state. The machine must be paused (or
// built and never started); guest RAM is saved separately (Memory).
func (m *Machine) SaveState() (*MachineState, error) {
	m.mu.Lock()
	paused := !m.started || (m.pauseReq && m.parked == m.running)
	m.mu.Unlock()
	if !paused {
		return nil, ErrNotPaused
	}
	st := &MachineState{Version: StateVersion, VCPUs: make([]VCPUState, len(m.runners))}
	if err := m.loadMSRIndex(); err != nil {
		return nil, err
	}
	// One vCPU after the other: saving them concurrently was no faster
	// (measured on kvm_pvm with 2 host CPUs).
	for i, r := range m.runners {
		var err error
		if st.VCPUs[i], err = m.saveVCPU(r.c); err != nil {
			return nil, fmt.Errorf("vm: save vCPU %d: %w", r.c.ID, err)
		}
	}
	for _, id := range []uint32{kvm.IRQChipPICMaster, kvm.IRQChipPICSlave, kvm.IRQChipIOAPIC} {
		c, err := m.kvm.IRQChip(id)
		if err != nil {
			return nil, err
		}
		st.IRQChips = append(st.IRQChips, c)
	}
	var err error
	if st.PIT, err = m.kvm.PIT2(); err != nil {
		return nil, err
	}
	if st.Clock, err = m.saveClock(st.VCPUs); err != nil {
		return nil, err
	}
	st.UART, st.I8042, st.RTC, st.PM, st.PCI = m.uart.SaveState(), m.kbd.SaveState(), m.rtc.SaveState(), m.pm.SaveState(), m.pci.SaveState()
	for _, d := range m.devs.Devices() {
		vs, err := devmgr.Save(d)
		if err != nil {
			return nil, fmt.Errorf("vm: %w", err)
		}
		st.Virtio = append(st.Virtio, vs)
	}
	if st.Hotplug, err = m.saveHotplug(); err != nil {
		return nil, err
	}
	st.Firmware = m.saveFirmware()
	return st, nil
}

func (m *Machine) saveVCPU(c *kvm.VCPU) (VCPUState, error) {
	var s VCPUState
	var err error
	if s.Regs, err = c.Regs(); err != nil {
		return s, err
	}
	if s.Sregs, err = c.Sregs(); err != nil {
		return s, err
	}
	// The XSAVE area holds the legacy FPU state too, and restoreVCPU loads
	// it instead of the FPU's: KVM_GET_FPU (a few µs of the handover on
	// kvm_pvm) is only needed where KVM has no XSAVE.
	if m.sys.CheckExtension(kvm.CapXSave) != 0 {
		x, err := c.XSave()
		if err != nil {
			return s, err
		}
		s.XSave = &x
	} else if s.FPU, err = c.FPU(); err != nil {
		return s, err
	}
	if m.sys.CheckExtension(kvm.CapXCRs) != 0 {
		x, err := c.XCRs()
		if err != nil {
			return s, err
		}
		s.XCRs = &x
	}
	if s.MSRs, err = m.readMSRs(c); err != nil {
		return s, err
	}
	if s.LAPIC, err = c.LAPIC(); err != nil {
		return s, err
	}
	if s.MPState, err = c.MPState(); err != nil {
		return s, err
	}
	if s.Events, err = c.VCPUEvents(); err != nil {
		return s, err
	}
	return s, nil
}

// loadMSRIndex reads, once, the list of MSRs KVM saves with a vCPU.
func (m *Machine) loadMSRIndex() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.msrIndex == nil {
		idx, err := m.sys.MSRIndexList()
		if err != nil {
			return err
		}
		m.msrIndex = idx
	}
	return nil
}

// readMSRs reads every MSR KVM saves with a vCPU (loadMSRIndex first).
// KVM_GET_MSRS stops at the first MSR it cannot read, so the list is read
// in pieces around those.
func (m *Machine) readMSRs(c *kvm.VCPU) ([]kvm.MSR, error) {
	var out []kvm.MSR
	rest := m.msrIndex
	for len(rest) > 0 {
		got, err := c.MSRs(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		rest = rest[len(got):]
		if len(rest) > 0 {
			rest = rest[1:] // unreadable here: skip it
		}
	}
	return out, nil
}

// restoreVCPU loads a saved vCPU state, in the order KVM needs: MSRs before
// the registers that depend on them, the LAPIC before the events that may
// be pending in it.
func restoreVCPU(c *kvm.VCPU, s VCPUState) error {
	var msrs []kvm.MSR
	var deadline []kvm.MSR
	for _, msr := range s.MSRs {
		if msr.Index == 0x6E0 { // IA32_TSC_DEADLINE is only accepted once the LAPIC is restored
			deadline = append(deadline, msr)
			continue
		}
		msrs = append(msrs, msr)
	}
	setMSRs(c, msrs)
	if err := c.SetSregs(s.Sregs); err != nil {
		return err
	}
	if err := c.SetRegs(s.Regs); err != nil {
		return err
	}
	if s.XSave != nil {
		if err := c.SetXSave(*s.XSave); err != nil {
			return err
		}
	} else if err := c.SetFPU(s.FPU); err != nil {
		return err
	}
	if s.XCRs != nil {
		if err := c.SetXCRs(*s.XCRs); err != nil {
			return err
		}
	}
	if err := c.SetLAPIC(s.LAPIC); err != nil {
		return err
	}
	setMSRs(c, deadline)
	if err := c.SetMPState(s.MPState); err != nil {
		return err
	}
	return c.SetVCPUEvents(s.Events)
}

// setMSRs loads msrs with as few KVM_SET_MSRS calls as it can (each is a
// round trip into KVM, a few microseconds on the handover's critical path):
// one call for all, and where KVM refuses one (it stops at the first MSR it
// refuses, api.rst 4.19) the list is halved until the refused ones stand
// alone and are skipped. An MSR this host's KVM refuses is not fatal; those
// before it are merely set twice, to the same value.
func setMSRs(c *kvm.VCPU, msrs []kvm.MSR) {
	if len(msrs) == 0 || c.SetMSRs(msrs) == nil || len(msrs) == 1 {
		return
	}
	h := len(msrs) / 2
	setMSRs(c, msrs[:h])
	setMSRs(c, msrs[h:])
}

// restoreState loads st into a freshly built machine (vCPUs created, devices
// wired, guest RAM mapped).
func (m *Machine) restoreState(st *MachineState) error {
	if len(st.VCPUs) != len(m.runners) {
		return fmt.Errorf("vm: state has %d vCPUs, the machine %d", len(st.VCPUs), len(m.runners))
	}
	for i, r := range m.runners {
		if err := restoreVCPU(r.c, st.VCPUs[i]); err != nil {
			return fmt.Errorf("vm: restore vCPU %d: %w", i, err)
		}
	}
	if len(st.IRQChips) != 3 {
		return fmt.Errorf("vm: state has %d interrupt controllers, want 3", len(st.IRQChips))
	}
	for _, c := range st.IRQChips {
		if err := m.kvm.SetIRQChip(c); err != nil {
			return err
		}
	}
	if err := m.kvm.SetPIT2(st.PIT); err != nil {
		return err
	}
	// KVM_SET_CLOCK with the saved kvmclock: guest time resumes where it
	// stopped, never backwards.
	clk := st.Clock
	clk.Flags = 0
	if err := m.kvm.SetClock(clk); err != nil {
		return err
	}
	m.uart.RestoreState(st.UART)
	m.kbd.RestoreState(st.I8042)
	m.rtc.RestoreState(st.RTC)
	m.pm.RestoreState(st.PM)
	m.pci.RestoreState(st.PCI)
	// Hot-plugged disks are back in their slots before any device state
	// is loaded, as the guest left them.
	if err := m.restoreHotplug(&st.Hotplug); err != nil {
		return err
	}
	devs := m.devs.Devices()
	if len(st.Virtio) != len(devs) {
		return fmt.Errorf("vm: state has %d virtio devices, config %d", len(st.Virtio), len(devs))
	}
	for i, d := range devs {
		if err := devmgr.Restore(d, &st.Virtio[i]); err != nil {
			return fmt.Errorf("vm: virtio device %d: %w", i, err)
		}
	}
	return m.restoreFirmware(st.Firmware)
}
