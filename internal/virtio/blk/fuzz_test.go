package blk_test

import (
	"testing"

	"github.com/govisor/govisor/internal/virtio/blk"
)

// FuzzRequest sends requests with random type, sector, payload and
// writable length through the transport: every request must complete
// with a status, and nothing may panic.
func FuzzRequest(f *testing.F) {
	f.Add(uint32(blk.TypeIn), uint64(0), []byte{}, uint16(512))
	f.Add(uint32(blk.TypeOut), uint64(2047), make([]byte, 512), uint16(0))
	f.Add(uint32(blk.TypeWriteZeroes), uint64(0), seg(1, 3, 1), uint16(0))
	f.Add(uint32(blk.TypeGetID), uint64(0), []byte{}, uint16(3))
	f.Fuzz(func(t *testing.T, typ uint32, sector uint64, payload []byte, inLen uint16) {
		if len(payload) > 1<<16 {
			return
		}
		r := newRig(t, blk.Options{Serial: "fuzz"}, allFeat)
		st, n, _ := r.do(t, 0, typ, sector, payload, uint32(inLen))
		if st > blk.StatusUnsupp {
			t.Fatalf("status %d", st)
		}
		if n == 0 || n > uint32(inLen)+1 {
			t.Fatalf("used length %d for %d writable bytes", n, inLen)
		}
	})
}
