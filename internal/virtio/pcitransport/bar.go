package pcitransport

import "github.com/govisor/govisor/internal/iobus"

// barDevice dispatches accesses to BAR 0 by region.
type barDevice struct{ t *Transport }

// Read implements iobus.Device.
func (b barDevice) Read(off uint64, data []byte) {
	t := b.t
	switch region, o := off&^(regionSize-1), off&(regionSize-1); {
	case region == commonOffset:
		t.readCommon(o, data)
	case region == isrOffset:
		clear(data)
		if o == 0 && len(data) > 0 {
			// Reading the ISR status clears it and deasserts INTx (4.1.4.5).
			data[0] = byte(t.isr.Swap(0))
			t.updateINTx()
		}
	case region == deviceOffset:
		clear(data)
		t.dev.ReadConfig(o, data)
	case off >= msixTableOff:
		t.msix.read(off, data)
	default:
		clear(data) // notify region reads as zero
	}
}

// Write implements iobus.Device.
func (b barDevice) Write(off uint64, data []byte) {
	t := b.t
	switch region, o := off&^(regionSize-1), off&(regionSize-1); {
	case region == commonOffset:
		t.writeCommon(o, data)
	case region == deviceOffset:
		t.dev.WriteConfig(o, data)
	case off >= msixTableOff:
		t.msix.write(off, data)
	case off >= notifyOffset:
		// A kick that did not go through an ioeventfd (4.1.4.4).
		if (off-notifyOffset)%notifyMult == 0 {
			t.kick(int((off - notifyOffset) / notifyMult))
		}
	}
}

// MMIO returns the BAR's MMIO handler (the same one passed to MapMMIO).
func (t *Transport) MMIO() iobus.Device { return barDevice{t} }
