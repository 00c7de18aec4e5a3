package acpi

// buildDSDT returns the Differentiated System Description Table (section
// 5.2.11.1) for cfg. In ASL it reads:
//
//	DefinitionBlock ("", "DSDT", 2, "GOVSR ", "GOVISOR ", 1) {
//	    Scope (\_SB) {
//	        Device (PCI0) {                  // section 6.1.5, PCI Firmware spec
//	            Name (_HID, EisaId ("PNP0A03"))
//	            Name (_UID, 0)
//	            Name (_SEG, 0)
//	            Name (_BBN, 0)
//	            Name (_CRS, ResourceTemplate () {
//	                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0, 0, 1)
//	                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
//	                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0x0000, 0x0CF7, 0, 0x0CF8)
//	                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, 0x0D00, 0xFFFF, 0, 0xF300)
//	                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, ...32-bit window)
//	                QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, ...64-bit window, if any)
//	            })
//	            ...hot-pluggable slots, if any (see hotplugObjects)
//	        }
//	        Device (COM1) {
//	            Name (_HID, EisaId ("PNP0501"))
//	            Name (_UID, 1)
//	            Name (_CRS, ResourceTemplate () { IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08) IRQNoFlags () {4} })
//	        }
//	    }
//	    Scope (\_GPE) { ... }               // if hotplug: see gpeScope
//	    Name (_S5, Package (4) { 5, 5, 0, 0 })  // section 7.4.2
//	}
//
// The I/O ranges follow QEMU's PC: the bridge forwards every port but the
// configuration ports it consumes itself.
func buildDSDT(cfg Config) ([]byte, error) {
	var a amlBuilder
	a.scope(`\_SB`, func() {
		a.device("PCI0", func() {
			a.name("_HID", func() { a.eisaID("PNP0A03") })
			a.name("_UID", func() { a.integer(0) })
			a.name("_SEG", func() { a.integer(0) })
			a.name("_BBN", func() { a.integer(0) })
			a.name("_CRS", func() { a.buffer(pciHostResources(cfg)) })
			if cfg.HotplugSlots != 0 {
				a.hotplugObjects(cfg.HotplugSlots)
			}
		})
		a.device("COM1", func() {
			a.name("_HID", func() { a.eisaID("PNP0501") })
			a.name("_UID", func() { a.integer(1) })
			var r resourceTemplate
			r.io(COM1Port, 1, 8)
			r.irqNoFlags(COM1IRQ)
			a.name("_CRS", func() { a.buffer(r.end()) })
		})
	})
	if cfg.HotplugSlots != 0 {
		a.gpeScope()
	}
	// \_S5: SLP_TYPa, SLP_TYPb, then two reserved values (section 7.4.2).
	a.name(`_S5`, func() { a.pkgOf(SleepTypeS5, SleepTypeS5, 0, 0) })
	aml, err := a.bytes()
	if err != nil {
		return nil, err
	}
	t := header("DSDT", headerSize+len(aml), 2) // revision 2: 64-bit integers
	copy(t[headerSize:], aml)
	return finish(t), nil
}

// pciHostResources returns the _CRS of the PCI host bridge: the bus
// number range, the consumed config ports and the forwarded windows.
func pciHostResources(cfg Config) []byte {
	var r resourceTemplate
	r.wordAddr(resTypeBus, 0, 0, 0)
	r.io(PCIConfigPort, 1, 8)
	r.wordAddr(resTypeIO, ioRangeEntire, 0x0000, PCIConfigPort-1)
	r.wordAddr(resTypeIO, ioRangeEntire, 0x0D00, 0xFFFF)
	r.dwordMemory(memTypeFlagsMMIO, uint32(cfg.PCIMMIO32Start), uint32(cfg.PCIMMIO32End))
	if cfg.PCIMMIO64Size != 0 {
		r.qwordMemory(memTypeFlagsMMIO64, cfg.PCIMMIO64Start, cfg.PCIMMIO64Start+cfg.PCIMMIO64Size-1)
	}
	return r.end()
}
