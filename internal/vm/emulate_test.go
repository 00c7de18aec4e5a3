package vm

import "testing"

func TestDecodeFallback(t *testing.T) {
	cases := []struct {
		name   string
		b      []byte
		want   fallback
		refuse bool
	}{
		{"int3", []byte{0xCC, 0x90}, fallback{length: 1, vector: vecBP}, false},
		{"int 0x0e", []byte{0xCD, 0x0E}, fallback{length: 2, vector: 14}, false},
		{"int 0x80 refused", []byte{0xCD, 0x80}, fallback{}, true},
		{"ud2", []byte{0x0F, 0x0B}, fallback{length: 0, vector: vecUD}, false},
		{"clac", []byte{0x0F, 0x01, 0xCA}, fallback{length: 3, vector: -1, toggleAC: -1}, false},
		{"stac", []byte{0x0F, 0x01, 0xCB}, fallback{length: 3, vector: -1, toggleAC: 1}, false},
		{"fwait", []byte{0x9B}, fallback{length: 1, vector: -1}, false},
		{"popcnt eax, ecx", []byte{0xF3, 0x0F, 0xB8, 0xC1}, fallback{length: 4, vector: -1, popcnt: true, size: 4, dst: 0, src: 1}, false},
		{"popcnt r9, r10", []byte{0xF3, 0x4D, 0x0F, 0xB8, 0xCA}, fallback{length: 5, vector: -1, popcnt: true, size: 8, dst: 9, src: 10}, false},
		{"popcnt from memory refused", []byte{0xF3, 0x0F, 0xB8, 0x01}, fallback{}, true},
		{"cmpxchg16b refused", []byte{0xF0, 0x48, 0x0F, 0xC7, 0x0E}, fallback{}, true},
		{"empty", nil, fallback{}, true},
	}
	for _, c := range cases {
		got, err := decodeFallback(c.b)
		if c.refuse {
			if err == nil {
				t.Errorf("%s: accepted as %+v", c.name, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func FuzzDecodeFallback(f *testing.F) {
	f.Add([]byte{0xCC})
	f.Add([]byte{0xF3, 0x48, 0x0F, 0xB8, 0xC0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := decodeFallback(b)
		if err == nil && (fb.length > len(b) || fb.dst > 15 || fb.src > 15) {
			t.Fatalf("decoded %+v from % x", fb, b)
		}
	})
}
