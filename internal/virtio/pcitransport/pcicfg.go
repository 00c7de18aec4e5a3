package pcitransport

import "encoding/binary"

// The PCI configuration access capability (virtio 1.2 section 4.1.4.9):
// a window in configuration space through which a driver that cannot
// reach the BAR (SeaBIOS's 32-bit code when firmware placed the 64-bit
// BAR above 4 GiB) reads and writes the BAR's structures. Its bar, offset
// and length fields and the data bytes live in the configuration space
// itself, so snapshots and migrations carry them with the rest of it.
const (
	cfgTypePCI     = 5  // VIRTIO_PCI_CAP_PCI_CFG
	pciCfgCapLen   = 20 // sizeof(struct virtio_pci_cfg_cap)
	pciCfgBar      = 4  // cap.bar, relative to the capability
	pciCfgOffset   = 8  // cap.offset
	pciCfgLength   = 12 // cap.length
	pciCfgData     = 16 // pci_cfg_data[4]
	pciCfgDataSize = 4
)

// addPCICfgCapability appends the VIRTIO_PCI_CAP_PCI_CFG capability. It
// comes last in the list so that the offsets of the capabilities before it
// (MSI-X's among them) are those of configuration spaces saved before it
// existed, which therefore still restore.
func (t *Transport) addPCICfgCapability() error {
	body := make([]byte, pciCfgCapLen-2)
	body[0], body[1] = pciCfgCapLen, cfgTypePCI
	off, err := t.cfg.AddCapability(capVendor, body)
	if err != nil {
		return err
	}
	t.pciCfgCap = off
	// The driver writes cap.bar, cap.offset, cap.length and pci_cfg_data
	// (4.1.4.9.2); cap_len, cfg_type and id stay read-only.
	t.cfg.SetWriteMask(off+pciCfgBar, []byte{0xFF})
	all := []byte{0xFF, 0xFF, 0xFF, 0xFF}
	for _, f := range []uint16{pciCfgOffset, pciCfgLength, pciCfgData} {
		t.cfg.SetWriteMask(off+f, all)
	}
	return nil
}

// touchesPCICfgData reports whether a configuration access of n bytes at
// offset covers a byte of pci_cfg_data.
func (t *Transport) touchesPCICfgData(offset uint16, n int) bool {
	d := int(t.pciCfgCap) + pciCfgData
	return t.pciCfgCap != 0 && int(offset) < d+pciCfgDataSize && d < int(offset)+n
}

// pciCfgWindow returns the BAR offset and length the driver selected, and
// false when the selection is one a driver must not use (4.1.4.9.2: the
// length is 1, 2 or 4 and the offset a multiple of it) or lies outside
// the transport's one BAR; such accesses do nothing.
func (t *Transport) pciCfgWindow() (uint64, int, bool) {
	bar := t.cfg.U8(t.pciCfgCap + pciCfgBar)
	off := t.cfg.U32(t.pciCfgCap + pciCfgOffset)
	n := t.cfg.U32(t.pciCfgCap + pciCfgLength)
	if bar != BARIndex || (n != 1 && n != 2 && n != 4) || off%n != 0 || uint64(off)+uint64(n) > BARSize {
		return 0, 0, false
	}
	return uint64(off), int(n), true
}

// pciCfgRead performs the BAR read a driver's read of pci_cfg_data asks
// for and stores its cap.length bytes in pci_cfg_data (4.1.4.9.1).
func (t *Transport) pciCfgRead() {
	off, n, ok := t.pciCfgWindow()
	if !ok {
		return
	}
	var buf [pciCfgDataSize]byte
	barDevice{t}.Read(off, buf[:n])
	// Bytes past cap.length keep what the driver last wrote there.
	v := t.cfg.U32(t.pciCfgCap + pciCfgData)
	var cur [pciCfgDataSize]byte
	binary.LittleEndian.PutUint32(cur[:], v)
	copy(cur[:n], buf[:n])
	t.cfg.SetU32(t.pciCfgCap+pciCfgData, binary.LittleEndian.Uint32(cur[:]))
}

// pciCfgWrite performs the BAR write of the first cap.length bytes of
// pci_cfg_data that a driver's write to pci_cfg_data asks for (4.1.4.9.1).
func (t *Transport) pciCfgWrite() {
	off, n, ok := t.pciCfgWindow()
	if !ok {
		return
	}
	var buf [pciCfgDataSize]byte
	binary.LittleEndian.PutUint32(buf[:], t.cfg.U32(t.pciCfgCap+pciCfgData))
	barDevice{t}.Write(off, buf[:n])
}
