// Package pflash implements a CFI parallel NOR flash with the Intel/Sharp
// command set, the device QEMU's pflash_cfi01 models and OVMF's
// QemuFlashFvbServicesRuntimeDxe drives for its UEFI variable store.
//
// References: the Common Flash Interface (JEDEC JESD68.01, "Common Flash
// Interface (CFI)", with the query structure of its section 4), Intel's
// "3 Volt Intel StrataFlash Memory" datasheet (28F128J3, section 9 "Device
// Operations": read array 0xFF, read identifier 0x90, CFI query 0x98, read
// status 0x70, clear status 0x50, block erase 0x20/0xD0, program 0x40 or
// 0x10), and OVMF's OvmfPkg/QemuFlashFvbServicesRuntimeDxe/QemuFlash.c,
// which probes the flash by writing 0x50 and 0x70 and expects the cleared
// status (0x00) back.
//
// The bank is one byte wide, as QEMU's x86 machines make it. Reads in read
// array mode return the contents; every other mode returns the status
// register, the identifier or the query structure, so a VMM that maps the
// contents straight into the guest for speed must unmap them while
// ReadArray is false (QEMU's "romd" mode). Everything the guest writes is
// hostile input: unknown commands fall back to read array mode, as QEMU's
// model does, and never reach outside the contents.
package pflash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Commands (StrataFlash datasheet table 4, "Command Bus Operations").
const (
	CmdReadArray    = 0xFF
	CmdReadArray0   = 0x00 // QEMU's reset value: read array as well
	CmdProgram      = 0x40
	CmdProgramAlt   = 0x10
	CmdBlockErase   = 0x20
	CmdEraseConfirm = 0xD0
	CmdClearStatus  = 0x50
	CmdReadStatus   = 0x70
	CmdReadID       = 0x90
	CmdQuery        = 0x98
)

// Status register bits (datasheet table 15, "Status Register Definitions").
const (
	StatusReady        = 0x80 // SR.7: write state machine ready
	StatusEraseError   = 0x20 // SR.5
	StatusProgramError = 0x10 // SR.4
	StatusLocked       = 0x02 // SR.1: block locked, the operation aborted
)

// Identifier codes read in read-identifier mode: Intel's manufacturer code
// and the 28F128J3's device code.
const (
	ManufacturerIntel = 0x89
	Device28F128J3    = 0x18
)

// ErrGeometry is returned for a flash size that is not a whole number of
// erase blocks.
var ErrGeometry = errors.New("pflash: bad geometry")

// Flash is one flash bank. Contents is the guest-visible array, owned by
// the caller (for example a shared mapping of a file, which then holds the
// guest's writes). It is safe for concurrent use.
type Flash struct {
	mu        sync.Mutex
	contents  []byte
	blockSize int
	readOnly  bool
	cmd       byte // the command in force
	cycle     int  // 1 while a two-cycle command waits for its second write
	status    byte
	query     []byte
	// onMode is told when the bank enters (true) or leaves read array mode.
	onMode func(readArray bool)
}

// New returns a bank over contents with erase blocks of blockSize bytes.
// A read-only bank refuses program and erase (status: locked). onMode, if
// not nil, is called (under the bank's lock: it must not call back into
// the bank) whenever reads switch between the contents and a register:
// the VMM maps or unmaps the contents.
func New(contents []byte, blockSize int, readOnly bool, onMode func(readArray bool)) (*Flash, error) {
	if blockSize <= 0 || blockSize&(blockSize-1) != 0 || len(contents) == 0 || len(contents)%blockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes in blocks of %d (want a power-of-two block size dividing the size)", ErrGeometry, len(contents), blockSize)
	}
	f := &Flash{contents: contents, blockSize: blockSize, readOnly: readOnly, cmd: CmdReadArray, status: StatusReady, onMode: onMode}
	f.query = buildQuery(len(contents), blockSize)
	return f, nil
}

// Size is the bank's size in bytes.
func (f *Flash) Size() int { return len(f.contents) }

// ReadArray reports whether reads return the contents.
func (f *Flash) ReadArray() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return readsArray(f.cmd)
}

func readsArray(cmd byte) bool { return cmd == CmdReadArray || cmd == CmdReadArray0 }

// Read handles a guest read at offset: the contents in read array mode,
// else the register the command selects in the low byte (the bank is one
// byte wide, so wider reads see it once, as on QEMU's x86 flash).
func (f *Flash) Read(offset uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(data)
	switch f.cmd {
	case CmdReadArray, CmdReadArray0:
		if offset < uint64(len(f.contents)) {
			copy(data, f.contents[offset:])
		}
	case CmdReadID:
		// Identifier codes at byte addresses 0 and 1 of every block
		// (datasheet table 5, "Read Identifier Codes").
		switch offset & 0xFF {
		case 0:
			data[0] = ManufacturerIntel
		case 1:
			data[0] = Device28F128J3
		}
	case CmdQuery:
		if q := offset & 0xFF; q < uint64(len(f.query)) {
			data[0] = f.query[q]
		}
	default: // program, erase, read and clear status: the status register
		data[0] = f.status
	}
}

// Write handles a guest write at offset: a command, or the second cycle
// of program or erase. Only the low byte takes part (byte-wide bank).
func (f *Flash) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset >= uint64(len(f.contents)) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	before := readsArray(f.cmd)
	f.write(offset, data[0])
	// Under the lock, so that two vCPUs racing through commands leave
	// the mapping matching the last mode.
	if after := readsArray(f.cmd); before != after && f.onMode != nil {
		f.onMode(after)
	}
}

func (f *Flash) write(offset uint64, v byte) {
	if f.cycle == 1 {
		f.cycle = 0
		switch f.cmd {
		case CmdProgram, CmdProgramAlt:
			if f.readOnly {
				f.status |= StatusProgramError | StatusLocked
			} else {
				// QEMU stores the byte as given; OVMF only ever clears
				// bits of programmed bytes, as NOR flash can.
				f.contents[offset] = v
			}
			f.status |= StatusReady
			return // reads return the status until the next command
		case CmdBlockErase:
			switch v {
			case CmdEraseConfirm:
				if f.readOnly {
					f.status |= StatusEraseError | StatusLocked
				} else {
					start := offset &^ uint64(f.blockSize-1)
					block := f.contents[start : start+uint64(f.blockSize)]
					for i := range block {
						block[i] = 0xFF
					}
				}
				f.status |= StatusReady
			case CmdReadArray:
				f.cmd = CmdReadArray
			default:
				// A bad confirm: the datasheet's "improper command
				// sequence", both error bits set.
				f.status |= StatusEraseError | StatusProgramError
				f.cmd = CmdReadStatus
			}
			return
		}
	}
	switch v {
	case CmdReadArray, CmdReadArray0:
		f.cmd = CmdReadArray
	case CmdProgram, CmdProgramAlt, CmdBlockErase:
		f.cmd, f.cycle = v, 1
	case CmdClearStatus:
		// As QEMU: the status clears and the bank returns to read array.
		f.status = 0
		f.cmd = CmdReadArray
	case CmdReadStatus, CmdReadID, CmdQuery:
		f.cmd = v
	default:
		// Unknown or unsupported (buffered writes, lock bits): back to
		// read array, as QEMU's model resets on a sequence it lacks.
		f.cmd = CmdReadArray
	}
}

// State is the command state of a bank (the contents are saved apart).
type State struct {
	Cmd    byte
	Cycle  byte
	Status byte
}

// SaveState returns the command state.
func (f *Flash) SaveState() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return State{Cmd: f.cmd, Cycle: byte(f.cycle), Status: f.status}
}

// RestoreState loads a saved command state and tells onMode which way
// reads go now.
func (f *Flash) RestoreState(s State) {
	f.mu.Lock()
	f.cmd, f.cycle, f.status = s.Cmd, int(s.Cycle&1), s.Status
	switch f.cmd {
	case CmdReadArray, CmdReadArray0, CmdProgram, CmdProgramAlt, CmdBlockErase, CmdReadStatus, CmdReadID, CmdQuery:
	default:
		f.cmd, f.cycle = CmdReadArray, 0 // a state this model never makes
	}
	if f.cycle == 1 && f.cmd != CmdProgram && f.cmd != CmdProgramAlt && f.cmd != CmdBlockErase {
		f.cycle = 0
	}
	if f.onMode != nil {
		f.onMode(readsArray(f.cmd))
	}
	f.mu.Unlock()
}

// buildQuery returns the CFI query structure (JESD68.01 section 4: the
// "QRY" identification string at 0x10, system interface data at 0x1B,
// device geometry at 0x27) for a byte-wide bank of uniform blocks, as read
// at byte addresses 0x00-0x30 in query mode.
func buildQuery(size, blockSize int) []byte {
	q := make([]byte, 0x31)
	copy(q[0x10:], "QRY")
	binary.LittleEndian.PutUint16(q[0x13:], 0x0001) // primary command set: Intel/Sharp extended
	binary.LittleEndian.PutUint16(q[0x15:], 0x0000) // no extended query table
	binary.LittleEndian.PutUint16(q[0x17:], 0x0000) // no alternate command set
	binary.LittleEndian.PutUint16(q[0x19:], 0x0000)
	q[0x1B], q[0x1C] = 0x45, 0x55                   // Vcc 4.5-5.5 V (BCD volts.tenths), as QEMU's model
	q[0x1F] = 7                                     // typical byte program: 2^7 us
	q[0x21] = 10                                    // typical block erase: 2^10 ms
	q[0x23] = 4                                     // maximum program: 2^4 times typical
	q[0x25] = 4                                     // maximum erase: 2^4 times typical
	q[0x27] = byte(log2(size))                      // device size: 2^n bytes (rounded down)
	binary.LittleEndian.PutUint16(q[0x28:], 0x0000) // x8 asynchronous interface
	binary.LittleEndian.PutUint16(q[0x2A:], 0x0000) // no write buffer
	q[0x2C] = 1                                     // one erase block region
	binary.LittleEndian.PutUint16(q[0x2D:], uint16(size/blockSize-1))
	binary.LittleEndian.PutUint16(q[0x2F:], uint16(blockSize/256))
	return q
}

func log2(n int) int {
	r := 0
	for n > 1 {
		n >>= 1
		r++
	}
	return r
}
