package balloon

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Activate implements virtio.Device: a worker for each of the inflate,
// deflate and (with STATS_VQ) stats queues.
func (d *Device) Activate(ctx virtio.ActivateContext) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.workers.Active() {
		return fmt.Errorf("balloon: already active")
	}
	if len(ctx.Queues) < 2 {
		return fmt.Errorf("balloon: %d queues, need inflate and deflate", len(ctx.Queues))
	}
	d.workers.Start()
	for qi, inflate := range []bool{true, false} {
		if ctx.Queues[qi] == nil {
			continue
		}
		d.workers.Go(func(stop <-chan struct{}) {
			virtio.ServeQueue(&ctx, qi, stop, func(c *virtqueue.Chain) uint32 {
				d.pages(ctx.Mem, c, inflate)
				return 0
			})
		})
	}
	if ctx.Features&FeatureStatsVQ != 0 && len(ctx.Queues) > QueueStats && ctx.Queues[QueueStats] != nil {
		// A buffer held before a pause is still the driver's outstanding
		// one only if the queue has a chain in flight; a queue set up
		// anew after a reset has none.
		s := ctx.Queues[QueueStats].SaveState()
		held := d.statsHeld && s.LastAvail != s.NextUsed
		head := d.statsHead
		d.workers.Go(func(stop <-chan struct{}) { d.serveStats(&ctx, stop, held, head) })
	} else {
		d.statsHeld = false
	}
	return nil
}

// Reset implements virtio.Device: stops the workers.
func (d *Device) Reset() { d.workers.Reset(&d.mu) }

// pages handles one chain of the inflate or deflate queue: an array of
// little-endian 32-bit page frame numbers (5.5.6). Inflated pages are
// released to the host; deflated ones need nothing, since the next guest
// access faults in a zero page.
func (d *Device) pages(mem virtio.Memory, c *virtqueue.Chain, inflate bool) {
	var b [4]byte
	var runStart, runLen uint64 // a run of consecutive pages to release at once
	n := c.ReadLen / 4
	for i := range n {
		if _, err := c.ReadAt(b[:], int64(i*4)); err != nil {
			break
		}
		gpa := uint64(binary.LittleEndian.Uint32(b[:])) * PageSize
		if !inflate {
			d.deflated.Add(1)
			continue
		}
		d.inflated.Add(1)
		if runLen > 0 && runStart+runLen == gpa {
			runLen += PageSize
			continue
		}
		d.release(mem, runStart, runLen)
		runStart, runLen = gpa, PageSize
	}
	d.release(mem, runStart, runLen)
}

// release gives the host memory behind [gpa, gpa+n) back to the kernel.
// Guest RAM is a private anonymous mapping, so MADV_DONTNEED frees the
// pages and the next access reads zeros.
func (d *Device) release(mem virtio.Memory, gpa, n uint64) {
	if n == 0 {
		return
	}
	b, err := mem.Slice(gpa, n)
	if err != nil {
		if n > PageSize {
			// The run may cross a RAM region boundary: page by page.
			for off := uint64(0); off < n; off += PageSize {
				d.release(mem, gpa+off, PageSize)
			}
			return
		}
		d.badPFNs.Add(1)
		return
	}
	if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
		d.releaseErrors.Add(1)
		return
	}
	// The pages now read as zeros: migration must send them again.
	mem.MarkDirty(gpa, n)
}

// RequestStats asks the guest for fresh statistics by returning its stats
// buffer (5.5.6.3); Stats shows them once the driver sends them.
func (d *Device) RequestStats() {
	select {
	case d.requests <- struct{}{}:
	default:
	}
}

// serveStats runs the stats queue: it parses every buffer the driver
// sends, holds the buffer, and returns it when statistics are requested.
func (d *Device) serveStats(ctx *virtio.ActivateContext, stop <-chan struct{}, held bool, head uint16) {
	q := ctx.Queues[QueueStats]
	defer func() { d.statsHeld, d.statsHead = held, head }()
	var tick <-chan time.Time
	if d.interval > 0 {
		t := time.NewTicker(d.interval)
		defer t.Stop()
		tick = t.C
	}
	giveBack := func() bool {
		if !held {
			return true
		}
		held = false
		if err := q.PushHead(head, 0, nil); err != nil {
			ctx.NeedsReset(err)
			return false
		}
		if q.NeedInterrupt() {
			ctx.Interrupt(QueueStats)
		}
		return true
	}
	var c virtqueue.Chain
	for {
		q.DisableNotify()
		for {
			ok, err := q.Pop(&c)
			if err != nil {
				ctx.NeedsReset(err)
				return
			}
			if !ok {
				break
			}
			// A driver holds one buffer out; should it send another,
			// the older one goes back.
			if !giveBack() {
				return
			}
			d.parseStats(&c)
			held, head = true, c.Head
		}
		if q.EnableNotify() {
			continue
		}
		select {
		case <-stop:
			return
		case <-ctx.Notify[QueueStats]:
		case <-tick:
			if !giveBack() {
				return
			}
		case <-d.requests:
			if !giveBack() {
				return
			}
		}
	}
}
