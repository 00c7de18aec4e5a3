// Package fwcfg implements QEMU's firmware configuration device (fw_cfg) as
// x86 firmware such as SeaBIOS and OVMF expect it: a selector port, a data
// port, a file directory and the DMA interface.
//
// The specification is QEMU's docs/specs/fw_cfg.rst ("QEMU Firmware
// Configuration (fw_cfg) Device"); section names below refer to it. Item
// keys are those of QEMU's include/standard-headers/linux/qemu_fw_cfg.h.
//
// Register the device once at Base for Size ports:
//
//	io.Register(fwcfg.Base, fwcfg.Size, dev)
//
// Everything the guest writes here (selectors, DMA descriptor addresses,
// the descriptors themselves) is hostile input: out-of-range keys read as
// zeros and DMA outside guest memory sets the descriptor's error bit.
package fwcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Port layout on x86 ("Register Locations"): selector at 0x510 (16-bit),
// data at 0x511 (8-bit), the 64-bit big-endian DMA address at 0x514.
const (
	Base         = 0x510
	Size         = 12
	SelectorPort = Base
	DataPort     = Base + 1
	DMAPort      = Base + 4

	offSelector = 0
	offData     = 1
	offDMA      = 4
)

// Item keys ("Firmware Configuration Items" and qemu_fw_cfg.h).
const (
	KeySignature = 0x0000 // "QEMU"
	KeyID        = 0x0001 // feature bitmap: bit 0 traditional, bit 1 DMA
	KeyUUID      = 0x0002
	KeyRAMSize   = 0x0003
	KeyNoGraphic = 0x0004
	KeyNBCPUs    = 0x0005 // 16-bit count of vCPUs present at boot
	KeyBootMenu  = 0x000E // 16-bit: show the firmware's boot menu
	KeyMaxCPUs   = 0x000F // 16-bit: highest vCPU count (APIC IDs)
	KeyFileDir   = 0x0019
	KeyFileFirst = 0x0020 // the first key of a named file

	KeyArchLocal = 0x8000 // architecture-specific items start here
	KeyE820Table = KeyArchLocal + 3

	keyWriteChannel    = 0x4000 // selector bit 14: ignored since QEMU 2.4
	fileNameLen        = 56
	fileEntrySize      = 64
	featureTraditional = 1 << 0
	featureDMA         = 1 << 1
)

// DMA control bits ("Guest-side DMA Interface").
const (
	dmaError  = 1 << 0
	dmaRead   = 1 << 1
	dmaSkip   = 1 << 2
	dmaSelect = 1 << 3
	dmaWrite  = 1 << 4

	dmaAccessSize = 16 // FWCfgDmaAccess: control, length (BE32), address (BE64)
	// dmaSignature is what a read of the DMA address register returns,
	// "QEMU CFG" in big-endian byte order.
	dmaSignature = "QEMU CFG"
	// zeroChunk bounds one zero-filling write into guest memory.
	zeroChunk = 64 << 10
)

// Errors of building the item set.
var (
	ErrDuplicate = errors.New("fwcfg: duplicate item")
	ErrName      = errors.New("fwcfg: bad file name")
	ErrFull      = errors.New("fwcfg: no key left for a file")
)

// Memory is guest-physical memory as the DMA interface reaches it; writes
// go through WriteAt (bounds-checked, an error outside RAM).
type Memory interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
}

// dirtyMarker is implemented by memories that track device writes for live
// migration (guestmem.Memory).
type dirtyMarker interface{ MarkDirty(gpa, n uint64) }

// Device is one fw_cfg device. It is safe for concurrent use.
type Device struct {
	mu      sync.Mutex
	mem     Memory
	items   map[uint16][]byte
	files   map[string]uint16
	sel     uint16 // current key, write-channel bit cleared
	off     uint32 // data offset within the selected item
	dmaHigh uint32 // the high half of the DMA address, waiting for the low
}

// New returns a device with the signature, the feature bitmap (with DMA)
// and an empty file directory; DMA reaches guest memory through mem.
func New(mem Memory) *Device {
	d := &Device{mem: mem, items: map[uint16][]byte{}, files: map[string]uint16{}}
	d.items[KeySignature] = []byte("QEMU")
	d.items[KeyID] = le32(featureTraditional | featureDMA)
	d.items[KeyFileDir] = be32(0)
	return d
}

// Add sets the item at a fixed key (below KeyFileFirst, or architecture-
// specific); data is not copied and must not change afterwards.
func (d *Device) Add(key uint16, data []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if key == KeySignature || key == KeyID || key == KeyFileDir || key&keyWriteChannel != 0 ||
		(key >= KeyFileFirst && key < KeyArchLocal) {
		return fmt.Errorf("%w: key %#x is reserved", ErrDuplicate, key)
	}
	d.items[key] = data
	return nil
}

// AddFile adds a named file at the next free key and rewrites the file
// directory ("File Directory"), whose entries QEMU keeps sorted by name.
func (d *Device) AddFile(name string, data []byte) error {
	if name == "" || len(name) >= fileNameLen {
		return fmt.Errorf("%w: %q (1 to %d bytes)", ErrName, name, fileNameLen-1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[name]; ok {
		return fmt.Errorf("%w: file %q", ErrDuplicate, name)
	}
	if len(d.files) >= keyWriteChannel-KeyFileFirst {
		return fmt.Errorf("%w: %q", ErrFull, name)
	}
	key := KeyFileFirst + uint16(len(d.files))
	d.files[name] = key
	d.items[key] = data
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	sort.Strings(names)
	dir := make([]byte, 4+fileEntrySize*len(names))
	binary.BigEndian.PutUint32(dir, uint32(len(names)))
	for i, n := range names {
		e := dir[4+fileEntrySize*i:]
		k := d.files[n]
		binary.BigEndian.PutUint32(e[0:], uint32(len(d.items[k])))
		binary.BigEndian.PutUint16(e[4:], k)
		copy(e[8:8+fileNameLen-1], n)
	}
	d.items[KeyFileDir] = dir
	return nil
}

// Read handles guest reads: the data port yields the next bytes of the
// selected item (zeros past its end); the DMA port yields its signature.
func (d *Device) Read(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case offset == offData:
		d.readData(data)
	case offset >= offDMA && offset+uint64(len(data)) <= Size:
		copy(data, dmaSignature[offset-offDMA:])
	default:
		clear(data)
	}
}

// Write handles guest writes: a 16-bit selector write, or a big-endian DMA
// address whose low half (at 0x518) starts the transfer. Writes to the data
// port are ignored, as QEMU has done since 2.4 ("Selector Register").
func (d *Device) Write(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case offset == offSelector && len(data) == 2:
		d.selectKey(binary.LittleEndian.Uint16(data))
	case offset == offDMA && len(data) == 4:
		d.dmaHigh = binary.BigEndian.Uint32(data)
	case offset == offDMA+4 && len(data) == 4:
		addr := uint64(d.dmaHigh)<<32 | uint64(binary.BigEndian.Uint32(data))
		d.dmaHigh = 0
		d.dma(addr)
	case offset == offDMA && len(data) == 8:
		d.dmaHigh = 0
		d.dma(binary.BigEndian.Uint64(data))
	}
}

// selectKey selects an item and rewinds the data offset; bit 14 (the old
// write channel) does not take part in the key.
func (d *Device) selectKey(key uint16) {
	d.sel = key &^ keyWriteChannel
	d.off = 0
}

// readData copies the selected item from the current offset into p.
func (d *Device) readData(p []byte) {
	item := d.items[d.sel]
	n := 0
	if uint64(d.off) < uint64(len(item)) {
		n = copy(p, item[d.off:])
	}
	clear(p[n:])
	d.advance(uint32(len(p)))
}

// dma runs the FWCfgDmaAccess descriptor at addr and writes its control
// word back: 0 when done, the error bit when it failed.
func (d *Device) dma(addr uint64) {
	if d.mem == nil || addr > 1<<62 {
		return
	}
	var desc [dmaAccessSize]byte
	if _, err := d.mem.ReadAt(desc[:], int64(addr)); err != nil {
		return // no descriptor to report the error in
	}
	control := binary.BigEndian.Uint32(desc[0:])
	length := binary.BigEndian.Uint32(desc[4:])
	target := binary.BigEndian.Uint64(desc[8:])
	if control&dmaSelect != 0 {
		d.selectKey(uint16(control >> 16))
	}
	var failed bool
	switch {
	case control&dmaRead != 0:
		failed = d.dmaRead(target, length)
	case control&dmaWrite != 0:
		failed = true // no item is writable by the guest
	case control&dmaSkip != 0:
		d.advance(length)
	}
	var out [4]byte
	if failed {
		out[3] = dmaError
	}
	if _, err := d.mem.WriteAt(out[:], int64(addr)); err == nil {
		d.markDirty(addr, 4)
	}
}

// dmaRead copies length bytes of the selected item to guest memory at
// target, zeros past the item's end; it reports a failure to write there.
func (d *Device) dmaRead(target uint64, length uint32) bool {
	if target > 1<<62 {
		return true
	}
	item := d.items[d.sel]
	var src []byte
	if uint64(d.off) < uint64(len(item)) {
		src = item[d.off:]
	}
	if uint64(len(src)) > uint64(length) {
		src = src[:length]
	}
	d.advance(length)
	if len(src) > 0 {
		if _, err := d.mem.WriteAt(src, int64(target)); err != nil {
			return true
		}
		d.markDirty(target, uint64(len(src)))
	}
	rest := uint64(length) - uint64(len(src))
	at := target + uint64(len(src))
	var zeros []byte
	for rest > 0 {
		n := min(rest, zeroChunk)
		if zeros == nil {
			zeros = make([]byte, n)
		}
		if _, err := d.mem.WriteAt(zeros[:n], int64(at)); err != nil {
			return true
		}
		d.markDirty(at, n)
		at, rest = at+n, rest-n
	}
	return false
}

// advance moves the data offset, saturating rather than wrapping.
func (d *Device) advance(n uint32) {
	if uint64(d.off)+uint64(n) > uint64(^uint32(0)) {
		d.off = ^uint32(0)
		return
	}
	d.off += n
}

func (d *Device) markDirty(gpa, n uint64) {
	if m, ok := d.mem.(dirtyMarker); ok {
		m.MarkDirty(gpa, n)
	}
}

// State is the guest-visible register state, for snapshots.
type State struct {
	Selector uint16
	Offset   uint32
	DMAHigh  uint32
}

// SaveState returns the register state.
func (d *Device) SaveState() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{Selector: d.sel, Offset: d.off, DMAHigh: d.dmaHigh}
}

// RestoreState loads a saved register state (the items come from the
// machine's configuration, which must be the same).
func (d *Device) RestoreState(s State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sel, d.off, d.dmaHigh = s.Selector&^keyWriteChannel, s.Offset, s.DMAHigh
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
