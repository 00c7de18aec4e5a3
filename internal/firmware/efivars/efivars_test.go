package efivars

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unicode/utf16"
)

// store builds a variable store as OVMF formats one (a 72-byte volume
// header, the authenticated store header), holding vars, each given as
// name, state and data.
func store(t testing.TB, vars ...any) []byte {
	t.Helper()
	const hl, size = 72, 4096
	b := bytes.Repeat([]byte{0xFF}, hl+size)
	clear(b[:hl])
	copy(b[fvSignatureAt:], fvSignature)
	binary.LittleEndian.PutUint16(b[fvHeaderLenAt:], hl)
	sh := b[hl:]
	copy(sh, authVariableGUID[:])
	binary.LittleEndian.PutUint32(sh[16:], size)
	sh[20], sh[21] = storeFormatted, 0xFE
	clear(sh[22:28])
	off := hl + storeHeaderSize
	for i := 0; i+2 < len(vars); i += 3 {
		name := utf16.Encode([]rune(vars[i].(string) + "\x00"))
		data := vars[i+2].([]byte)
		h := make([]byte, authHeaderSize)
		binary.LittleEndian.PutUint16(h, startID)
		h[2] = vars[i+1].(byte)
		binary.LittleEndian.PutUint32(h[4:], 7)
		binary.LittleEndian.PutUint32(h[36:], uint32(2*len(name)))
		binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
		h[44] = 0xAB
		off += copy(b[off:], h)
		for _, c := range name {
			binary.LittleEndian.PutUint16(b[off:], c)
			off += 2
		}
		off += copy(b[off:], data)
		off = (off + 3) &^ 3
	}
	return b
}

func TestList(t *testing.T) {
	s := store(t, "MTC", byte(0x3C), []byte{1, 0, 0, 0}, "BootOrder", byte(0x3F), []byte{0, 0}, "MTC", byte(0x3F), []byte{2, 0, 0, 0})
	vars, err := List(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) != 2 || vars[0].Name != "BootOrder" || vars[1].Name != "MTC" || vars[1].Attributes != 7 || vars[1].Vendor[0] != 0xAB {
		t.Fatalf("variables %+v", vars)
	}
	v, ok, err := Get(s, "MTC")
	if err != nil || !ok || binary.LittleEndian.Uint32(v.Data) != 2 {
		t.Fatalf("MTC: %+v %v %v, want the live copy holding 2", v, ok, err)
	}
	if _, ok, _ := Get(s, "Boot0001"); ok {
		t.Error("found a variable that is not there")
	}
}

func TestBadStores(t *testing.T) {
	good := store(t, "A", byte(0x3F), []byte{1})
	for name, mutate := range map[string]func([]byte) []byte{
		"short":          func(b []byte) []byte { return b[:20] },
		"no signature":   func(b []byte) []byte { b[fvSignatureAt] = 'x'; return b },
		"header too big": func(b []byte) []byte { binary.LittleEndian.PutUint16(b[fvHeaderLenAt:], 0xFFFF); return b },
		"unknown store":  func(b []byte) []byte { b[72] ^= 1; return b },
		"store too big":  func(b []byte) []byte { binary.LittleEndian.PutUint32(b[72+16:], 1<<30); return b },
		"variable past the end": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[72+28+40:], 1<<31)
			return b
		},
	} {
		if _, err := List(mutate(bytes.Clone(good))); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

// FuzzList: any bytes the guest leaves in its flash parse without a panic,
// and every variable lies inside the store.
func FuzzList(f *testing.F) {
	f.Add(store(f, "MTC", byte(0x3F), []byte{1, 0, 0, 0}))
	f.Add(store(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		vars, _ := List(b)
		for _, v := range vars {
			if len(v.Data) > len(b) {
				t.Fatalf("variable %q of %d bytes from %d", v.Name, len(v.Data), len(b))
			}
		}
	})
}
