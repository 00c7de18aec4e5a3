package snapshot

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// record is a small struct with one field of every kind the codec has.
type record struct {
	A    uint8
	B    bool
	C    uint16
	D    uint32
	E    uint64
	F    int64
	G    int
	H    [4]byte
	I    []byte
	J    string
	K    time.Time
	List []uint32
}

func encodeRecord(e *Encoder, r *record) {
	e.U8(r.A)
	e.Bool(r.B)
	e.U16(r.C)
	e.U32(r.D)
	e.U64(r.E)
	e.I64(r.F)
	e.Int(r.G)
	e.Raw(r.H[:])
	e.Blob(r.I)
	e.String(r.J)
	e.Time(r.K)
	e.Len(len(r.List))
	for _, v := range r.List {
		e.U32(v)
	}
}

func decodeRecord(d *Decoder, r *record) error {
	r.A = d.U8()
	r.B = d.Bool()
	r.C = d.U16()
	r.D = d.U32()
	r.E = d.U64()
	r.F = d.I64()
	r.G = d.Int("G", 1000)
	d.Raw(r.H[:])
	r.I = d.Blob("I", 16)
	r.J = d.String("J", 16)
	r.K = d.Time()
	if n := d.Len("List", 8, 4); n > 0 {
		r.List = make([]uint32, n)
		for i := range r.List {
			r.List[i] = d.U32()
		}
	}
	return d.Finish()
}

func TestBinaryRoundTrip(t *testing.T) {
	for _, r := range []record{
		{},
		{A: 1, B: true, C: 0xBEEF, D: 0xDEADBEEF, E: 1 << 63, F: -5, G: 1000, H: [4]byte{1, 2, 3, 4},
			I: []byte("payload"), J: "name", K: time.Unix(1700000000, 123).UTC(), List: []uint32{7, 8, 9}},
	} {
		e := NewEncoder(nil)
		encodeRecord(e, &r)
		var got record
		if err := decodeRecord(NewDecoder(e.Bytes()), &got); err != nil {
			t.Fatalf("decode %+v: %v", r, err)
		}
		if got.A != r.A || got.B != r.B || got.C != r.C || got.D != r.D || got.E != r.E || got.F != r.F ||
			got.G != r.G || got.H != r.H || !bytes.Equal(got.I, r.I) || got.J != r.J || !got.K.Equal(r.K) ||
			got.K.IsZero() != r.K.IsZero() || len(got.List) != len(r.List) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		for i := range r.List {
			if got.List[i] != r.List[i] {
				t.Fatalf("List[%d] = %d, want %d", i, got.List[i], r.List[i])
			}
		}
	}
}

func TestBinaryErrors(t *testing.T) {
	good := func() []byte {
		e := NewEncoder(nil)
		encodeRecord(e, &record{J: "x", List: []uint32{1}})
		return e.Bytes()
	}
	// Offsets in the encoding of the record above.
	const (
		boolOff = 1
		intOff  = 1 + 1 + 2 + 4 + 8 + 8
		blobOff = intOff + 8 + 4
		strOff  = blobOff + 4
		listOff = strOff + 4 + 1 + 1
	)
	patch := func(off int, b ...byte) []byte {
		p := good()
		copy(p[off:], b)
		return p
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"truncated", good()[:len(good())-1], "3 bytes left"},
		{"trailing", append(good(), 0), "left after"},
		{"bad bool", patch(boolOff, 2), "boolean"},
		{"int too big", patch(intOff, 0xE9, 3), "G is 1001"},
		{"negative int", patch(intOff, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF), "G is -1"},
		{"blob over max", patch(blobOff, 17), "I has 17 elements"},
		{"string past end", patch(strOff, 16), "J has 16 elements"},
		{"huge list", patch(listOff, 0xFF, 0xFF, 0xFF, 0xFF), "List has 4294967295"},
		{"list past input", patch(listOff, 8), "List has 8 elements of at least 4 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r record
			err := decodeRecord(NewDecoder(tc.in), &r)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
		})
	}
}

// FuzzDecoder checks that no input makes the decoder panic or read past
// its input, and that whatever decodes re-encodes to the same bytes.
func FuzzDecoder(f *testing.F) {
	for _, r := range []record{{}, {B: true, I: []byte{1}, J: "ab", K: time.Unix(5, 0), List: []uint32{1, 2}}} {
		e := NewEncoder(nil)
		encodeRecord(e, &r)
		f.Add(e.Bytes())
	}
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, in []byte) {
		var r record
		if err := decodeRecord(NewDecoder(in), &r); err != nil {
			return
		}
		e := NewEncoder(nil)
		encodeRecord(e, &r)
		if !bytes.Equal(e.Bytes(), in) {
			t.Fatalf("re-encoding %x gave %x", in, e.Bytes())
		}
	})
}
