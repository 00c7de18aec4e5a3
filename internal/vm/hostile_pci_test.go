package vm

import (
	"encoding/binary"
	"fmt"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/pcihotplug"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// cfgWrite emits a configuration write through mechanism #1 (PCI Local Bus
// 3.0 §3.2.2.3.2): CONFIG_ADDRESS, then CONFIG_DATA at the byte offset.
func (h *hostileRun) cfgWrite(slot int, reg uint16, width int, v uint32) {
	h.a.out(pci.ConfigAddressPort, 4, 1<<31|uint32(slot)<<11|uint32(reg)&0xFC)
	h.a.out(pci.ConfigDataPort+uint16(reg&3), width, v)
}

// cfgRead emits a configuration read into ECX.
func (h *hostileRun) cfgRead(slot int, reg uint16, width int) {
	h.a.out(pci.ConfigAddressPort, 4, 1<<31|uint32(slot)<<11|uint32(reg)&0xFC)
	h.a.in(pci.ConfigDataPort+uint16(reg&3), width)
}

// setBAR emits the guest moving d's 64-bit BAR 0 to addr.
func (h *hostileRun) setBAR(d *hdev, addr uint64) {
	h.cfgWrite(d.slot, pci.RegBAR0, 4, uint32(addr))
	h.cfgWrite(d.slot, pci.RegBAR0+4, 4, uint32(addr>>32))
}

// capOffset finds capability id in d's configuration space.
func capOffset(d *hdev, id byte) uint16 {
	cs := d.tr.Config()
	for off := uint16(cs.U8(pci.RegCapPtr)); off != 0 && off < pci.ConfigSize; off = uint16(cs.U8(off + 1)) {
		if cs.U8(off) == id {
			return off
		}
	}
	return 0
}

// mmioRead64 reads 8 bytes through whatever the MMIO bus maps at addr (the
// VMM's view of who owns an address) and reports whether anything did.
func (h *hostileRun) mmioRead64(addr uint64) (uint64, bool) {
	var b [8]byte
	ok := h.m.mmio.Read(addr, b[:])
	return binary.LittleEndian.Uint64(b[:]), ok
}

// hostilePCIAttacks: configuration space, BARs, MSI-X and the hotplug
// registers. These are the PCI function's and the chipset's, below
// virtio: the guest may write anything to them (PCI 3.0 §6.1: reserved
// and read-only bits ignore writes), and the VMM must keep its own
// mappings consistent.
func hostilePCIAttacks(h *hostileRun) {
	rng, vda := h.devs[rngID], h.devs["vda"]
	good := func(q *hqueue) {
		for i := range uint16(4) {
			h.desc(q.desc, i, q.buf(int(i)), 64, dWrite, 0)
		}
	}

	// Configuration writes past the end and over read-only fields: with
	// the device running, every offset of the space (and past it, through
	// the unaligned data ports) gets all ones, but the BAR, the command
	// register and the MSI-X control, which would move or disable the
	// device; then the device must still be what it was and serve.
	q1 := h.queue(0, 8)
	good(q1)
	msix := capOffset(rng, 0x11)
	h.add("config space writes past the end", rng, wantHealthy, func() {
		h.initDev(rng, rngFeatures, q1)
		h.offer(rng, q1, 0)
		for reg := uint16(0); reg < pci.ConfigSize; reg += 4 {
			if reg == pci.RegCommand || reg >= pci.RegBAR0 && reg < pci.RegBAR0+24 || reg == msix {
				continue
			}
			h.cfgWrite(rng.slot, reg, 4, 0xFFFFFFFF)
		}
		h.cfgWrite(rng.slot, 0xFC, 4, 0xFFFFFFFF)
		// CONFIG_DATA at offsets 1-3 with wider accesses than fit.
		h.a.out(pci.ConfigAddressPort, 4, 1<<31|uint32(rng.slot)<<11|0xFC)
		h.a.out(pci.ConfigDataPort+2, 4, 0xFFFFFFFF)
		h.a.out(pci.ConfigDataPort+3, 2, 0xFFFF)
		h.a.out(pci.ConfigDataPort+1, 4, 0xFFFFFFFF)
		// Functions and buses that do not exist.
		h.a.out(pci.ConfigAddressPort, 4, 0xFFFFFFFF)
		h.a.out(pci.ConfigDataPort, 4, 0xFFFFFFFF)
		h.a.in(pci.ConfigDataPort, 4)
		h.a.out(pci.ConfigAddressPort, 2, 0xFFFF)
		h.offer(rng, q1, 1)
	}, func() error {
		if err := h.waitUsed(q1, 2); err != nil {
			return err
		}
		cs := rng.tr.Config()
		if v, d := cs.U16(pci.RegVendorID), cs.U16(pci.RegDeviceID); v != pcitransport.VendorID || d != pcitransport.DeviceIDBase+4 {
			return fmt.Errorf("vendor:device now %04x:%04x", v, d)
		}
		if c := capOffset(rng, 0x11); c != msix {
			return fmt.Errorf("the MSI-X capability moved from %#x to %#x", msix, c)
		}
		if a := cs.BARAddress(pcitransport.BARIndex); a != rng.bar {
			return fmt.Errorf("BAR 0 at %#x, want %#x", a, rng.bar)
		}
		return nil
	})

	// BAR sizing, then the BAR moved over guest RAM: the VMM maps it there
	// (RAM wins in KVM: the guest only hides its own memory); the old
	// address decodes nothing. Then back, and the device works again.
	ramBAR := h.area()
	h.add("BAR moved over RAM", nil, wantNone, func() {
		h.cfgWrite(rng.slot, pci.RegBAR0, 4, 0xFFFFFFFF)
		h.cfgWrite(rng.slot, pci.RegBAR0+4, 4, 0xFFFFFFFF)
		h.cfgRead(rng.slot, pci.RegBAR0, 4)
		h.setBAR(rng, ramBAR)
		h.a.st32(ramBAR+ccStatus, 0) // RAM now, not the device
	}, func() error {
		if a := rng.tr.Config().BARAddress(pcitransport.BARIndex); a != ramBAR {
			return fmt.Errorf("BAR 0 decodes %#x, want %#x", a, ramBAR)
		}
		if _, ok := h.mmioRead64(rng.bar); ok {
			return fmt.Errorf("the old BAR address %#x still decodes", rng.bar)
		}
		if rng.status()&1 == 0 {
			return fmt.Errorf("a write to RAM under the BAR reached the device (status %#x)", rng.status())
		}
		return nil
	})
	q2 := h.queue(0, 8)
	good(q2)
	h.add("BAR moved back", rng, wantHealthy, func() {
		h.setBAR(rng, rng.bar)
		h.initDev(rng, rngFeatures, q2)
		h.offer(rng, q2, 0)
	}, func() error { return h.waitUsed(q2, 1) })

	// A BAR moved over another device's: the VMM cannot map it (the
	// other device keeps its address) and the moved device cannot work.
	h.add("BAR moved over another device's", rng, wantNeedsReset, func() {
		h.setBAR(rng, vda.bar+0x2000)
		h.setBAR(rng, vda.bar)
		h.setBAR(rng, rng.bar)
	}, func() error {
		// vda's device configuration (capacity in sectors) still answers
		// at vda's BAR.
		if v, ok := h.mmioRead64(vda.bar + barDevCfg); !ok || v != (1<<20)/512 {
			return fmt.Errorf("vda's BAR now reads capacity %d (decoded %v)", v, ok)
		}
		return nil
	})
	h.add("BAR that wraps the address space", nil, wantNone, func() {
		h.setBAR(rng, 0xFFFFFFFFFFFFC000)
	}, func() error {
		if a := rng.tr.Config().BARAddress(pcitransport.BARIndex); a != pci.Unmapped {
			return fmt.Errorf("BAR 0 decodes %#x", a)
		}
		return nil
	})
	q3 := h.queue(0, 8)
	good(q3)
	h.add("memory decoding off and on", rng, wantHealthy, func() {
		h.setBAR(rng, rng.bar)
		h.cfgWrite(rng.slot, pci.RegCommand, 2, 0)
		h.a.st8(rng.bar+ccStatus, 0) // decodes nothing now
		h.cfgWrite(rng.slot, pci.RegCommand, 2, pci.CommandMemory|pci.CommandBusMaster)
		h.initDev(rng, rngFeatures, q3)
		h.offer(rng, q3, 0)
	}, func() error { return h.waitUsed(q3, 1) })

	// MSI-X (PCI 3.0 §6.8.2, virtio 1.2 §4.1.5.1.2): entries aimed
	// anywhere, writes past the table and into the read-only PBA, vector
	// numbers past the table, then interrupts on those vectors.
	q4 := h.queue(0, 8)
	good(q4)
	h.add("MSI-X table and PBA abuse", rng, wantHealthy, func() {
		h.initDev(rng, rngFeatures, q4)
		h.cfgWrite(rng.slot, msix+3, 1, 0xFF) // enable + function mask + reserved bits
		for i := uint64(0); i < 0x400; i += 8 {
			h.a.st64(rng.bar+barMSIXTable+i, 0xFFFFFFFFFFFFFFFF)
			h.a.st64(rng.bar+barMSIXPBA+i, 0xFFFFFFFFFFFFFFFF)
		}
		h.a.st64(rng.bar+barMSIXTable, 0)                  // entry 0: address 0
		h.a.st64(rng.bar+barMSIXTable+8, 0x0)              // data 0, unmasked
		h.a.st64(rng.bar+barMSIXTable+16, 0xDEAD_BEEF_000) // entry 1: no APIC there
		h.a.st64(rng.bar+barMSIXTable+24, 0xFF)
		h.a.st16(rng.bar+ccConfigVector, 0x1234)
		h.a.st16(rng.bar+ccQueueSelect, 0)
		h.a.st16(rng.bar+ccQueueVector, 0xFFFE)
		h.cfgWrite(rng.slot, msix+3, 1, 0x80) // enabled, unmasked: pending ones go out
		h.offer(rng, q4, 0)
		h.a.st16(rng.bar+ccQueueVector, 1)
		h.offer(rng, q4, 1)
		h.a.st16(rng.bar+ccQueueVector, 0)
		h.offer(rng, q4, 2)
		h.cfgWrite(rng.slot, msix+3, 1, 0)
	}, func() error {
		if err := h.waitUsed(q4, 3); err != nil {
			return err
		}
		var b [2]byte
		rng.tr.MMIO().Read(ccConfigVector, b[:])
		if v := binary.LittleEndian.Uint16(b[:]); v != pcitransport.NoVector {
			return fmt.Errorf("config vector reads %#x after 0x1234 was written", v)
		}
		return nil
	})

	// The hotplug registers (pcihotplug): eject everything, write the
	// read-to-clear registers, storm the GPE block. Boot devices are not
	// hot-pluggable: every one must still be on the bus.
	h.add("hotplug register abuse", nil, wantNone, func() {
		h.a.repeat(50, func() {
			h.a.out(pcihotplug.Base+pcihotplug.RegEject, 4, 0xFFFFFFFF)
			h.a.out(pcihotplug.Base+pcihotplug.RegUp, 4, 0xFFFFFFFF)
			h.a.out(pcihotplug.Base+pcihotplug.RegDown, 4, 0xFFFFFFFF)
			h.a.in(pcihotplug.Base+pcihotplug.RegUp, 4)
			h.a.in(pcihotplug.Base+pcihotplug.RegDown, 4)
			h.a.out(pcihotplug.Base+pcihotplug.RegEject, 1, 0xFF)
			h.a.out(pcihotplug.Base+pcihotplug.Size-1, 4, 0xFFFFFFFF) // runs past the block
			h.a.out(pcihotplug.GPEBase, 4, 0xFFFFFFFF)
			h.a.out(pcihotplug.GPEBase+2, 2, 0xFFFF)
			h.a.out(pcihotplug.GPEBase+2, 2, 0)
		})
		for _, d := range h.devs {
			h.a.out(pcihotplug.Base+pcihotplug.RegEject, 4, 1<<d.slot)
		}
	}, func() error {
		for _, d := range h.devs {
			var id [2]byte
			h.m.pci.ConfigRead(d.slot, 0, pci.RegVendorID, id[:])
			if binary.LittleEndian.Uint16(id[:]) != pcitransport.VendorID {
				return fmt.Errorf("%s gone from slot %d", d.id, d.slot)
			}
		}
		if d := h.m.Disks(); len(d) != 1 || d[0].Name != "vda" {
			return fmt.Errorf("disks %+v", d)
		}
		return nil
	})
}
