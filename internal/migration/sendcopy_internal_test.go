package migration

import "testing"

func TestAllSet(t *testing.T) {
	bm := []uint64{^uint64(0), 0b1111}
	cases := []struct {
		first, n uint64
		want     bool
	}{
		{0, 64, true}, {60, 8, true}, {64, 4, true}, {64, 5, false}, {0, 129, false}, {120, 1, false},
	}
	for _, c := range cases {
		if got := allSet(bm, c.first, c.n); got != c.want {
			t.Errorf("allSet(%d, %d) = %v", c.first, c.n, got)
		}
	}
	if allSet(nil, 0, 1) {
		t.Error("a nil bitmap claims pages are zero")
	}
}
