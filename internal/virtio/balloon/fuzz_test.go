package balloon_test

import (
	"testing"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/balloon"
)

// FuzzParseStats decodes arbitrary stats buffers: nothing may panic and
// a known tag's last value wins.
func FuzzParseStats(f *testing.F) {
	f.Add(statsBuf(balloon.TagFreeMemory, 1, balloon.TagTotalMemory, 2))
	f.Add([]byte{4, 0, 1})
	f.Add(statsBuf(0xFFFF, 1))
	f.Fuzz(func(t *testing.T, buf []byte) {
		var s balloon.Stats
		balloon.ParseStats(buf, &s)
		if len(buf) < 10 && s != (balloon.Stats{}) {
			t.Fatalf("partial entry parsed: %+v", s)
		}
	})
}

// FuzzPages sends arbitrary page number arrays on both queues through
// the transport: the device never breaks and counts every page.
func FuzzPages(f *testing.F) {
	f.Add(pfns(0x100000, 0x101000), true)
	f.Add([]byte{1, 2, 3}, false)
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, buf []byte, inflate bool) {
		if len(buf) > 4096 {
			return
		}
		r := newRig(t, balloon.Options{}, allFeat)
		q := balloon.QueueDeflate
		if inflate {
			q = balloon.QueueInflate
		}
		r.send(t, q, buf)
		c := r.dev.Counters()
		if c.Inflated+c.Deflated != uint64(len(buf)/4) || c.BadPFNs > c.Inflated {
			t.Fatalf("counters %+v for %d bytes", c, len(buf))
		}
		if r.drv.Status()&virtio.StatusDeviceNeedsReset != 0 {
			t.Fatal("device needs reset")
		}
	})
}
