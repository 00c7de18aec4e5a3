package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VCPU is a KVM virtual CPU file descriptor with its mmap'd kvm_run area.
type VCPU struct {
	ID  int
	fd  int
	run runStruct
}

// CreateVCPU creates vCPU id (its initial APIC ID) in the VM.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctlVal(vm.fd, reqCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	mem, err := unix.Mmap(int(fd), 0, vm.sys.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{ID: id, fd: int(fd), run: runStruct{mem: mem}}, nil
}

// Close unmaps kvm_run and closes the vCPU.
func (c *VCPU) Close() error {
	unix.Munmap(c.run.mem)
	return unix.Close(c.fd)
}

// ErrInterrupted is returned by Run when a signal or immediate_exit stopped it.
var ErrInterrupted = errors.New("kvm: KVM_RUN interrupted")

// Run enters the guest until the next exit that needs user space.
func (c *VCPU) Run() error {
	err := ioctlRun(c.fd)
	if err == unix.EINTR || err == unix.EAGAIN {
		return ErrInterrupted
	}
	if err != nil {
		return fmt.Errorf("kvm: KVM_RUN vCPU %d: %w", c.ID, err)
	}
	return nil
}

// SetImmediateExit sets kvm_run.immediate_exit: when 1, KVM_RUN returns EINTR at once.
func (c *VCPU) SetImmediateExit(on bool) {
	var v uint8
	if on {
		v = 1
	}
	*c.run.u8(1) = v
}

// ExitReason is kvm_run.exit_reason of the last exit.
func (c *VCPU) ExitReason() uint32 { return *c.run.u32(8) }

// IOExit describes a KVM_EXIT_IO: Data holds Count items of Size bytes.
type IOExit struct {
	Out   bool
	Size  int
	Port  uint16
	Count int
	Data  []byte // inside kvm_run: reads fill it, writes read it
}

// IO decodes the port-I/O exit; ok is false if the kernel gave an out-of-page buffer.
func (c *VCPU) IO() (IOExit, bool) {
	e := IOExit{
		Out:   *c.run.u8(32) == ioOut,
		Size:  int(*c.run.u8(33)),
		Port:  *c.run.u16(34),
		Count: int(*c.run.u32(36)),
	}
	off := *c.run.u64(40)
	n := uint64(e.Size) * uint64(e.Count)
	if off > uint64(len(c.run.mem)) || n > uint64(len(c.run.mem))-off {
		return e, false
	}
	e.Data = c.run.mem[off : off+n]
	return e, true
}

// MMIOExit describes a KVM_EXIT_MMIO access.
type MMIOExit struct {
	Addr  uint64
	Write bool
	Data  []byte // the 8-byte data field, cut to the access length
}

// MMIO decodes the MMIO exit.
func (c *VCPU) MMIO() MMIOExit {
	n := *c.run.u32(48)
	if n > 8 {
		n = 8
	}
	return MMIOExit{Addr: *c.run.u64(32), Write: *c.run.u8(52) != 0, Data: c.run.mem[40 : 40+n]}
}

// InternalError describes a KVM_EXIT_INTERNAL_ERROR.
type InternalError struct {
	Suberror uint32
	Data     []uint64
	Insn     []byte // instruction bytes for emulation failures, if KVM gave them
}

// Internal decodes an internal-error exit.
func (c *VCPU) Internal() InternalError {
	e := InternalError{Suberror: *c.run.u32(32)}
	n := *c.run.u32(36)
	if n > 16 {
		n = 16
	}
	for i := uint32(0); i < n; i++ {
		e.Data = append(e.Data, *c.run.u64(40 + 8*int(i)))
	}
	if e.Suberror == InternalErrorEmulation && n >= 2 && *c.run.u64(40)&emulationFlagInstrBytes != 0 {
		sz := int(*c.run.u8(48))
		if sz > 15 {
			sz = 15
		}
		e.Insn = append([]byte(nil), c.run.mem[49:49+sz]...)
	}
	return e
}

// SystemEvent returns the type of a KVM_EXIT_SYSTEM_EVENT.
func (c *VCPU) SystemEvent() uint32 { return *c.run.u32(32) }

// FailEntry returns the hardware reason of a KVM_EXIT_FAIL_ENTRY.
func (c *VCPU) FailEntry() uint64 { return *c.run.u64(32) }

// Regs returns the general-purpose registers.
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if _, err := ioctlPtr(c.fd, reqGetRegs, &r); err != nil {
		return r, fmt.Errorf("kvm: KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// SetRegs sets the general-purpose registers.
func (c *VCPU) SetRegs(r Regs) error {
	if _, err := ioctlPtr(c.fd, reqSetRegs, &r); err != nil {
		return fmt.Errorf("kvm: KVM_SET_REGS: %w", err)
	}
	return nil
}

// Sregs returns the special registers.
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if _, err := ioctlPtr(c.fd, reqGetSregs, &s); err != nil {
		return s, fmt.Errorf("kvm: KVM_GET_SREGS: %w", err)
	}
	return s, nil
}

// SetSregs sets the special registers.
func (c *VCPU) SetSregs(s Sregs) error {
	if _, err := ioctlPtr(c.fd, reqSetSregs, &s); err != nil {
		return fmt.Errorf("kvm: KVM_SET_SREGS: %w", err)
	}
	return nil
}

// FPU returns the x87/SSE state.
func (c *VCPU) FPU() (FPU, error) {
	var f FPU
	if _, err := ioctlPtr(c.fd, reqGetFPU, &f); err != nil {
		return f, fmt.Errorf("kvm: KVM_GET_FPU: %w", err)
	}
	return f, nil
}

// SetFPU sets the x87/SSE state.
func (c *VCPU) SetFPU(f FPU) error {
	if _, err := ioctlPtr(c.fd, reqSetFPU, &f); err != nil {
		return fmt.Errorf("kvm: KVM_SET_FPU: %w", err)
	}
	return nil
}

// LAPIC returns the local APIC state.
func (c *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	if _, err := ioctlPtr(c.fd, reqGetLAPIC, &l); err != nil {
		return l, fmt.Errorf("kvm: KVM_GET_LAPIC: %w", err)
	}
	return l, nil
}

// SetLAPIC sets the local APIC state.
func (c *VCPU) SetLAPIC(l LAPICState) error {
	if _, err := ioctlPtr(c.fd, reqSetLAPIC, &l); err != nil {
		return fmt.Errorf("kvm: KVM_SET_LAPIC: %w", err)
	}
	return nil
}

// VCPUEvents returns pending/injected events.
func (c *VCPU) VCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	if _, err := ioctlPtr(c.fd, reqGetVCPUEvents, &e); err != nil {
		return e, fmt.Errorf("kvm: KVM_GET_VCPU_EVENTS: %w", err)
	}
	return e, nil
}

// SetVCPUEvents sets pending/injected events (used to inject exceptions).
func (c *VCPU) SetVCPUEvents(e VCPUEvents) error {
	if _, err := ioctlPtr(c.fd, reqSetVCPUEvents, &e); err != nil {
		return fmt.Errorf("kvm: KVM_SET_VCPU_EVENTS: %w", err)
	}
	return nil
}

// MPState returns the multiprocessing state (MPState* constants).
func (c *VCPU) MPState() (uint32, error) {
	var s uint32
	if _, err := ioctlPtr(c.fd, reqGetMPState, &s); err != nil {
		return 0, fmt.Errorf("kvm: KVM_GET_MP_STATE: %w", err)
	}
	return s, nil
}

// SetMPState sets the multiprocessing state.
func (c *VCPU) SetMPState(s uint32) error {
	if _, err := ioctlPtr(c.fd, reqSetMPState, &s); err != nil {
		return fmt.Errorf("kvm: KVM_SET_MP_STATE: %w", err)
	}
	return nil
}

// XSave returns the XSAVE area.
func (c *VCPU) XSave() (XSave, error) {
	var x XSave
	if _, err := ioctlPtr(c.fd, reqGetXSave, &x); err != nil {
		return x, fmt.Errorf("kvm: KVM_GET_XSAVE: %w", err)
	}
	return x, nil
}

// SetXSave sets the XSAVE area.
func (c *VCPU) SetXSave(x XSave) error {
	if _, err := ioctlPtr(c.fd, reqSetXSave, &x); err != nil {
		return fmt.Errorf("kvm: KVM_SET_XSAVE: %w", err)
	}
	return nil
}

// XCRs returns the extended control registers.
func (c *VCPU) XCRs() (XCRs, error) {
	var x XCRs
	if _, err := ioctlPtr(c.fd, reqGetXCRs, &x); err != nil {
		return x, fmt.Errorf("kvm: KVM_GET_XCRS: %w", err)
	}
	return x, nil
}

// SetXCRs sets the extended control registers.
func (c *VCPU) SetXCRs(x XCRs) error {
	if _, err := ioctlPtr(c.fd, reqSetXCRs, &x); err != nil {
		return fmt.Errorf("kvm: KVM_SET_XCRS: %w", err)
	}
	return nil
}

// SetCPUID sets the CPUID the guest sees on this vCPU.
func (c *VCPU) SetCPUID(entries []CPUIDEntry) error {
	if len(entries) == 0 {
		return errors.New("kvm: KVM_SET_CPUID2: empty CPUID")
	}
	if _, err := ioctlBuf(c.fd, reqSetCPUID2, encodeCPUID(entries)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_CPUID2 (%d entries): %w", len(entries), err)
	}
	return nil
}

// MSRs reads the given model-specific registers.
func (c *VCPU) MSRs(indices []uint32) ([]MSR, error) {
	if len(indices) == 0 {
		return nil, nil
	}
	buf := make([]byte, 8+len(indices)*sizeofMSREntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(indices)))
	for i, idx := range indices {
		binary.LittleEndian.PutUint32(buf[8+i*sizeofMSREntry:], idx)
	}
	n, err := ioctlBuf(c.fd, reqGetMSRs, buf)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_MSRS: %w", err)
	}
	out := make([]MSR, n)
	for i := range out {
		b := buf[8+i*sizeofMSREntry:]
		out[i] = MSR{Index: binary.LittleEndian.Uint32(b), Data: binary.LittleEndian.Uint64(b[8:])}
	}
	return out, nil
}

// SetMSRs writes model-specific registers; it fails if KVM refuses any of them.
func (c *VCPU) SetMSRs(msrs []MSR) error {
	if len(msrs) == 0 {
		return nil
	}
	buf := make([]byte, 8+len(msrs)*sizeofMSREntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(msrs)))
	for i, m := range msrs {
		b := buf[8+i*sizeofMSREntry:]
		binary.LittleEndian.PutUint32(b, m.Index)
		binary.LittleEndian.PutUint64(b[8:], m.Data)
	}
	n, err := ioctlBuf(c.fd, reqSetMSRs, buf)
	if err != nil {
		return fmt.Errorf("kvm: KVM_SET_MSRS: %w", err)
	}
	if int(n) != len(msrs) {
		return fmt.Errorf("kvm: KVM_SET_MSRS: KVM refused MSR %#x", msrs[n].Index)
	}
	return nil
}

// TSCKHz returns the guest TSC frequency in kHz.
func (c *VCPU) TSCKHz() (uint32, error) {
	r, err := ioctlVal(c.fd, reqGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_GET_TSC_KHZ: %w", err)
	}
	return uint32(r), nil
}

// KVMClockCtrl tells the guest's kvmclock that the vCPU was paused by the host.
func (c *VCPU) KVMClockCtrl() error {
	if _, err := ioctlVal(c.fd, reqKVMClockCtrl, 0); err != nil {
		return fmt.Errorf("kvm: KVM_KVMCLOCK_CTRL: %w", err)
	}
	return nil
}
