package kvm

import (
	"encoding/binary"
	"fmt"
)

// Routing entry types (struct kvm_irq_routing_entry.type).
const (
	RouteIRQChip = 1
	RouteMSI     = 2
)

// Route is one GSI routing entry: to an in-kernel irqchip pin, or an MSI message.
type Route struct {
	GSI  uint32
	Type uint32
	// RouteIRQChip: the chip (IRQChipPICMaster, IRQChipPICSlave, IRQChipIOAPIC) and pin.
	Chip, Pin uint32
	// RouteMSI: the message.
	AddressLo, AddressHi, Data uint32
}

const sizeofRoutingEntry = 48

// SetGSIRouting replaces the VM's whole GSI routing table (KVM_SET_GSI_ROUTING).
func (vm *VM) SetGSIRouting(routes []Route) error {
	buf := make([]byte, 8+len(routes)*sizeofRoutingEntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(routes)))
	for i, r := range routes {
		e := buf[8+i*sizeofRoutingEntry:]
		binary.LittleEndian.PutUint32(e[0:], r.GSI)
		binary.LittleEndian.PutUint32(e[4:], r.Type)
		switch r.Type {
		case RouteIRQChip:
			binary.LittleEndian.PutUint32(e[16:], r.Chip)
			binary.LittleEndian.PutUint32(e[20:], r.Pin)
		case RouteMSI:
			binary.LittleEndian.PutUint32(e[16:], r.AddressLo)
			binary.LittleEndian.PutUint32(e[20:], r.AddressHi)
			binary.LittleEndian.PutUint32(e[24:], r.Data)
		}
	}
	if _, err := ioctlBuf(vm.fd, reqSetGSIRouting, buf); err != nil {
		return fmt.Errorf("kvm: KVM_SET_GSI_ROUTING (%d routes): %w", len(routes), err)
	}
	return nil
}

// PCRouting is the interrupt wiring of a PC: ISA IRQs 0-15 to the two 8259s
// (IRQ 2 is the cascade), and GSIs 0-23 to the IOAPIC pins, except that the
// PIT's IRQ 0 arrives on IOAPIC pin 2, as the MADT interrupt source override
// and the MP table tell the guest (ACPI 6.5, 5.2.12.5).
func PCRouting() []Route {
	var r []Route
	for i := uint32(0); i < 16; i++ {
		switch {
		case i == 2:
		case i < 8:
			r = append(r, Route{GSI: i, Type: RouteIRQChip, Chip: IRQChipPICMaster, Pin: i})
		default:
			r = append(r, Route{GSI: i, Type: RouteIRQChip, Chip: IRQChipPICSlave, Pin: i - 8})
		}
	}
	for i := uint32(0); i < 24; i++ {
		switch i {
		case 0:
			r = append(r, Route{GSI: 0, Type: RouteIRQChip, Chip: IRQChipIOAPIC, Pin: 2})
		case 2:
		default:
			r = append(r, Route{GSI: i, Type: RouteIRQChip, Chip: IRQChipIOAPIC, Pin: i})
		}
	}
	return r
}
