package kvm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine file descriptor.
type VM struct {
	sys *System
	fd  int
}

// CreateVM creates a new, empty VM.
func (s *System) CreateVM() (*VM, error) {
	fd, err := ioctlVal(s.fd, reqCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(fd))
	return &VM{sys: s, fd: int(fd)}, nil
}

// FD returns the VM file descriptor.
func (vm *VM) FD() int { return vm.fd }

// Close releases the VM; its vCPUs must be closed first.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// CheckExtension asks the VM (KVM_CHECK_EXTENSION on the VM fd) about capability c.
func (vm *VM) CheckExtension(c int) int {
	r, err := ioctlVal(vm.fd, reqCheckExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

// SetUserMemoryRegion maps host memory mem at guest-physical gpa in slot.
// Passing a nil mem deletes the slot.
func (vm *VM) SetUserMemoryRegion(slot uint32, flags uint32, gpa uint64, mem []byte) error {
	r := UserspaceMemoryRegion{Slot: slot, Flags: flags, GuestPhysAddr: gpa}
	if len(mem) > 0 {
		r.MemorySize = uint64(len(mem))
		r.UserspaceAddr = sliceAddr(mem)
	}
	if _, err := ioctlPtr(vm.fd, reqSetUserMemoryRegion, &r); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d at %#x (+%#x): %w", slot, gpa, len(mem), err)
	}
	return nil
}

// SetTSSAddr places the three-page TSS region that Intel VMX needs for real mode.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctlVal(vm.fd, reqSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page identity map Intel VMX needs for real mode.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlPtr(vm.fd, reqSetIdentityMapAddr, &addr); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local APICs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctlVal(vm.fd, reqCreateIRQChip, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// PITSpeakerDummy asks KVM_CREATE_PIT2 to emulate a dummy speaker port (0x61).
const PITSpeakerDummy = 1

// CreatePIT2 creates the in-kernel i8254 PIT.
func (vm *VM) CreatePIT2(flags uint32) error {
	c := pitConfig{Flags: flags}
	if _, err := ioctlPtr(vm.fd, reqCreatePIT2, &c); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// IRQLine sets the level of an in-kernel irqchip input (GSI).
func (vm *VM) IRQLine(gsi uint32, level bool) error {
	l := irqLevel{IRQ: gsi}
	if level {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, reqIRQLine, &l); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE gsi %d: %w", gsi, err)
	}
	return nil
}

// IRQFD makes a write to eventfd efd raise GSI gsi inside KVM.
func (vm *VM) IRQFD(efd int, gsi uint32, deassign bool) error {
	f := irqfd{FD: uint32(efd), GSI: gsi}
	if deassign {
		f.Flags = 1
	}
	if _, err := ioctlPtr(vm.fd, reqIRQFD, &f); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD gsi %d: %w", gsi, err)
	}
	return nil
}

// IOEventFD makes a guest write of length n at addr (port I/O if pio)
// signal eventfd efd inside KVM instead of exiting to user space.
func (vm *VM) IOEventFD(efd int, addr uint64, n uint32, pio bool, match *uint64, deassign bool) error {
	e := ioeventfd{Addr: addr, Len: n, FD: int32(efd)}
	if pio {
		e.Flags |= IOEventFDPIO
	}
	if match != nil {
		e.Flags |= IOEventFDDataMatch
		e.DataMatch = *match
	}
	if deassign {
		e.Flags |= IOEventFDDeassign
	}
	if _, err := ioctlPtr(vm.fd, reqIOEventFD, &e); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD at %#x: %w", addr, err)
	}
	return nil
}

// SignalMSI injects a message-signalled interrupt.
func (vm *VM) SignalMSI(m MSI) error {
	if _, err := ioctlPtr(vm.fd, reqSignalMSI, &m); err != nil {
		return fmt.Errorf("kvm: KVM_SIGNAL_MSI: %w", err)
	}
	return nil
}

// Clock returns the VM's kvmclock.
func (vm *VM) Clock() (ClockData, error) {
	var c ClockData
	_, err := ioctlPtr(vm.fd, reqGetClock, &c)
	if err != nil {
		return c, fmt.Errorf("kvm: KVM_GET_CLOCK: %w", err)
	}
	return c, nil
}

// SetClock sets the VM's kvmclock.
func (vm *VM) SetClock(c ClockData) error {
	if _, err := ioctlPtr(vm.fd, reqSetClock, &c); err != nil {
		return fmt.Errorf("kvm: KVM_SET_CLOCK: %w", err)
	}
	return nil
}

// IRQChip returns the state of in-kernel interrupt controller id.
func (vm *VM) IRQChip(id uint32) (IRQChip, error) {
	c := IRQChip{ChipID: id}
	_, err := ioctlPtr(vm.fd, reqGetIRQChip, &c)
	if err != nil {
		return c, fmt.Errorf("kvm: KVM_GET_IRQCHIP %d: %w", id, err)
	}
	return c, nil
}

// SetIRQChip restores the state of an in-kernel interrupt controller.
func (vm *VM) SetIRQChip(c IRQChip) error {
	if _, err := ioctlPtr(vm.fd, reqSetIRQChip, &c); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IRQCHIP %d: %w", c.ChipID, err)
	}
	return nil
}

// PIT2 returns the in-kernel PIT state.
func (vm *VM) PIT2() (PITState2, error) {
	var p PITState2
	_, err := ioctlPtr(vm.fd, reqGetPIT2, &p)
	if err != nil {
		return p, fmt.Errorf("kvm: KVM_GET_PIT2: %w", err)
	}
	return p, nil
}

// SetPIT2 restores the in-kernel PIT state.
func (vm *VM) SetPIT2(p PITState2) error {
	if _, err := ioctlPtr(vm.fd, reqSetPIT2, &p); err != nil {
		return fmt.Errorf("kvm: KVM_SET_PIT2: %w", err)
	}
	return nil
}

// DirtyLog fills bitmap (one bit per page of the slot) with the pages
// written since the last call, and resets KVM's log for that slot.
func (vm *VM) DirtyLog(slot uint32, bitmap []byte) error {
	d := dirtyLog{Slot: slot, Bitmap: sliceAddr(bitmap)}
	if _, err := ioctlPtr(vm.fd, reqGetDirtyLog, &d); err != nil {
		return fmt.Errorf("kvm: KVM_GET_DIRTY_LOG slot %d: %w", slot, err)
	}
	return nil
}

// EnableCap enables a VM capability with arguments.
func (vm *VM) EnableCap(c uint32, args ...uint64) error {
	e := enableCap{Cap: c}
	copy(e.Args[:], args)
	if _, err := ioctlPtr(vm.fd, reqEnableCap, &e); err != nil {
		return fmt.Errorf("kvm: KVM_ENABLE_CAP %d: %w", c, err)
	}
	return nil
}
