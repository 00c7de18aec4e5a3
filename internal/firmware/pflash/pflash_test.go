package pflash

import (
	"bytes"
	"errors"
	"testing"
)

const block = 4096

func newFlash(t testing.TB, n int, ro bool) (*Flash, []byte, *[]bool) {
	t.Helper()
	buf := bytes.Repeat([]byte{0xA5}, n)
	var modes []bool
	f, err := New(buf, block, ro, func(ra bool) { modes = append(modes, ra) })
	if err != nil {
		t.Fatal(err)
	}
	return f, buf, &modes
}

func rd(f *Flash, off uint64) byte {
	var b [1]byte
	f.Read(off, b[:])
	return b[0]
}

func wr(f *Flash, off uint64, v byte) { f.Write(off, []byte{v}) }

// TestOVMFProbe runs QemuFlashDetected's sequence (OvmfPkg
// QemuFlashFvbServicesRuntimeDxe/QemuFlash.c): clear status must read the
// array back, read status must then give the cleared status 0x00, which
// OVMF takes as "FD behaves as FLASH".
func TestOVMFProbe(t *testing.T) {
	f, _, modes := newFlash(t, 4*block, false)
	orig := rd(f, 7)
	wr(f, 7, CmdClearStatus)
	if got := rd(f, 7); got != orig {
		t.Fatalf("after clear status: read %#x, want the array's %#x", got, orig)
	}
	wr(f, 7, CmdReadStatus)
	if got := rd(f, 7); got != 0x00 {
		t.Fatalf("status after clear: %#x, want 0x00", got)
	}
	wr(f, 7, CmdReadArray)
	if got := rd(f, 7); got != orig || !f.ReadArray() {
		t.Fatalf("back in read array: %#x (read array %v)", got, f.ReadArray())
	}
	if want := []bool{false, true}; !equalBools(*modes, want) {
		t.Errorf("mode changes %v, want %v", *modes, want)
	}
}

// TestProgramErase: OVMF's QemuFlashWrite (0x10 then the byte, for each
// byte, then 0xFF) and QemuFlashEraseBlock (0x20, 0xD0).
func TestProgramErase(t *testing.T) {
	f, buf, modes := newFlash(t, 4*block, false)
	data := []byte("variable")
	for i, b := range data {
		wr(f, uint64(block+10+i), CmdProgramAlt)
		wr(f, uint64(block+10+i), b)
		if st := rd(f, uint64(block+10+i)); st&StatusReady == 0 {
			t.Fatalf("status after program %#x: not ready", st)
		}
	}
	wr(f, uint64(block+10+len(data)-1), CmdReadArray)
	if !bytes.Equal(buf[block+10:block+10+len(data)], data) {
		t.Fatalf("contents %q, want %q", buf[block+10:block+10+len(data)], data)
	}
	got := make([]byte, len(data))
	f.Read(uint64(block+10), got)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
	wr(f, uint64(block+100), CmdBlockErase)
	wr(f, uint64(block+100), CmdEraseConfirm)
	if st := rd(f, block); st&StatusReady == 0 || st&(StatusEraseError|StatusProgramError) != 0 {
		t.Fatalf("status after erase %#x", st)
	}
	wr(f, block, CmdReadArray)
	if !bytes.Equal(buf[block:2*block], bytes.Repeat([]byte{0xFF}, block)) {
		t.Fatal("erased block is not all 0xFF")
	}
	if buf[block-1] != 0xA5 || buf[2*block] != 0xA5 {
		t.Fatal("erase reached outside its block")
	}
	// Each program/erase sequence left read array once and came back once
	// more (the program loop stays in status mode between bytes).
	if want := []bool{false, true, false, true}; !equalBools(*modes, want) {
		t.Errorf("mode changes %v, want %v", *modes, want)
	}
}

// TestReadOnly: a code bank refuses program and erase with the status
// saying why, its contents untouched.
func TestReadOnly(t *testing.T) {
	f, buf, _ := newFlash(t, block, true)
	wr(f, 3, CmdProgram)
	wr(f, 3, 0x00)
	if st := rd(f, 3); st&(StatusProgramError|StatusLocked) != StatusProgramError|StatusLocked {
		t.Errorf("status after a refused program %#x", st)
	}
	wr(f, 0, CmdBlockErase)
	wr(f, 0, CmdEraseConfirm)
	if st := rd(f, 0); st&StatusEraseError == 0 {
		t.Errorf("status after a refused erase %#x", st)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0xA5}, block)) {
		t.Error("a read-only bank changed")
	}
}

// TestIDAndQuery: read identifier and the CFI query structure.
func TestIDAndQuery(t *testing.T) {
	f, _, _ := newFlash(t, 132*block, false)
	wr(f, 0, CmdReadID)
	if m, d := rd(f, 0), rd(f, 1); m != ManufacturerIntel || d != Device28F128J3 {
		t.Errorf("identifier %#x %#x", m, d)
	}
	wr(f, 0, CmdQuery)
	if q := string([]byte{rd(f, 0x10), rd(f, 0x11), rd(f, 0x12)}); q != "QRY" {
		t.Errorf("query string %q", q)
	}
	if cs := uint16(rd(f, 0x13)) | uint16(rd(f, 0x14))<<8; cs != 1 {
		t.Errorf("command set %d, want 1 (Intel)", cs)
	}
	blocks := int(rd(f, 0x2D)) | int(rd(f, 0x2E))<<8
	size := (int(rd(f, 0x2F)) | int(rd(f, 0x30))<<8) * 256
	if rd(f, 0x2C) != 1 || blocks+1 != 132 || size != block {
		t.Errorf("geometry: %d regions, %d blocks of %d", rd(f, 0x2C), blocks+1, size)
	}
	wr(f, 0, 0xE8) // buffered write: not supported, back to read array
	if !f.ReadArray() || rd(f, 0) != 0xA5 {
		t.Error("an unsupported command did not return to read array")
	}
}

// TestSaveRestore: the command state round-trips and the restored bank
// tells the VMM how to map it.
func TestSaveRestore(t *testing.T) {
	f, _, _ := newFlash(t, block, false)
	wr(f, 0, CmdBlockErase)
	s := f.SaveState()
	g, _, modes := newFlash(t, block, false)
	g.RestoreState(s)
	if g.SaveState() != s || g.ReadArray() || len(*modes) != 1 || (*modes)[0] {
		t.Fatalf("restored %+v (modes %v), want %+v", g.SaveState(), *modes, s)
	}
	wr(g, 0, CmdEraseConfirm)
	if rd(g, 0)&StatusReady == 0 {
		t.Error("erase after restore not done")
	}
	g.RestoreState(State{Cmd: 0x42, Cycle: 1})
	if !g.ReadArray() {
		t.Error("a bad saved command was kept")
	}
}

func TestGeometry(t *testing.T) {
	for _, c := range []struct{ n, bs int }{{0, block}, {block + 1, block}, {block, 3}, {block, 0}} {
		if _, err := New(make([]byte, c.n), c.bs, false, nil); !errors.Is(err, ErrGeometry) {
			t.Errorf("New(%d, %d): %v, want ErrGeometry", c.n, c.bs, err)
		}
	}
}

// FuzzFlash: any sequence of guest reads and writes stays inside the bank,
// never panics, and leaves the mapping callback agreeing with ReadArray.
func FuzzFlash(f *testing.F) {
	f.Add([]byte{0x10, 0, 0x41, 0x11, 0, 0x20, 0xFF, 0})
	f.Add([]byte{0x20, 5, 0x20, 0xD0, 5, 0x70, 0x98, 0x12})
	f.Fuzz(func(t *testing.T, ops []byte) {
		buf := make([]byte, 2*block)
		var mapped = true
		fl, err := New(buf, block, len(ops)%2 == 1, func(ra bool) { mapped = ra })
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+2 < len(ops); i += 3 {
			off := uint64(ops[i+1])<<5 | uint64(ops[i+2]&0x1F)
			if ops[i]&0x80 != 0 {
				off += uint64(ops[i]&0x3F) * block // sometimes out of range
				var d [8]byte
				fl.Read(off, d[:1+int(ops[i]&7)%8])
			} else {
				fl.Write(off, []byte{ops[i+2], ops[i]})
			}
			if mapped != fl.ReadArray() {
				t.Fatalf("op %d: mapping %v, read array %v", i/3, mapped, fl.ReadArray())
			}
		}
	})
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
