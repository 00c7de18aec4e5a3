package allzero

import "testing"

func TestIs(t *testing.T) {
	if !Is(nil) || !Is([]byte{}) {
		t.Fatal("an empty buffer is all zero")
	}
	for _, n := range []int{1, 7, 8, 4095, 4096, 4097, 3*4096 + 5} {
		b := make([]byte, n)
		if !Is(b) {
			t.Fatalf("%d zero bytes: not zero", n)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			b[i] = 1
			if Is(b) {
				t.Fatalf("%d bytes with byte %d set: zero", n, i)
			}
			b[i] = 0
		}
	}
}

func BenchmarkIs(b *testing.B) {
	p := make([]byte, 64<<10)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		Is(p)
	}
}
