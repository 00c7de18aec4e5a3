package diskimage

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestCowFileMatchesMemFile drives a CowFile and a MemFile with the same
// random writes, truncates and reads: they must agree, and the CowFile's
// base must stay untouched.
func TestCowFileMatchesMemFile(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := make([]byte, 20000)
	for i := range base {
		base[i] = byte(i * 7)
	}
	orig := bytes.Clone(base)
	c := NewCowFile(base, 0)
	m := NewMemFile(bytes.Clone(base), 0)
	for i := range 2000 {
		off := int64(r.IntN(40000))
		switch r.IntN(4) {
		case 0:
			p := make([]byte, r.IntN(9000))
			for j := range p {
				p[j] = byte(r.Uint32())
			}
			c.WriteAt(p, off)
			m.WriteAt(p, off)
		case 1:
			c.Truncate(off)
			m.Truncate(off)
		default:
			a := make([]byte, r.IntN(9000))
			b := make([]byte, len(a))
			na, ea := c.ReadAt(a, off)
			nb, eb := m.ReadAt(b, off)
			if na != nb || (ea == io.EOF) != (eb == io.EOF) || !bytes.Equal(a[:na], b[:nb]) {
				t.Fatalf("step %d: read at %d: cow %d %v, mem %d %v", i, off, na, ea, nb, eb)
			}
		}
		cs, _ := c.Stat()
		ms, _ := m.Stat()
		if cs.Size() != ms.Size() {
			t.Fatalf("step %d: sizes %d %d", i, cs.Size(), ms.Size())
		}
	}
	if !bytes.Equal(base, orig) {
		t.Fatal("base written")
	}
	if _, err := NewMemFile(nil, 10).WriteAt(make([]byte, 11), 0); err == nil {
		t.Fatal("MemFile limit ignored")
	}
	if err := NewCowFile(nil, 10).Truncate(11); err == nil {
		t.Fatal("CowFile limit ignored")
	}
}
