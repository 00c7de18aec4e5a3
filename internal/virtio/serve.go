package virtio

import (
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// Handler processes one chain and returns how many bytes it wrote into
// the chain's writable buffers.
type Handler func(c *virtqueue.Chain) uint32

// ServeQueue is the worker loop a device runs per queue on its own
// goroutine: it takes every available chain, hands it to h, returns it,
// suppresses kicks while busy (2.7.10), raises interrupts the driver asks
// for, and sleeps until a kick or stop is closed. A malformed ring is
// reported through ctx.NeedsReset and ends the loop.
func ServeQueue(ctx *ActivateContext, qi int, stop <-chan struct{}, h Handler) {
	q := ctx.Queues[qi]
	if q == nil {
		return
	}
	var c virtqueue.Chain
	// With EVENT_IDX the driver's used_event coalesces interrupts itself,
	// so each completion is signalled as soon as the driver wants it;
	// without, one interrupt per batch.
	eager := q.Config().EventIdx
	for {
		for {
			q.DisableNotify()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok, err := q.Pop(&c)
				if err != nil {
					ctx.NeedsReset(err)
					return
				}
				if !ok {
					break
				}
				n := h(&c)
				if err := q.Push(&c, n); err != nil {
					ctx.NeedsReset(err)
					return
				}
				if eager && q.NeedInterrupt() {
					ctx.Interrupt(qi)
				}
			}
			if q.NeedInterrupt() {
				ctx.Interrupt(qi)
			}
			if !q.EnableNotify() {
				break
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Notify[qi]:
		}
	}
}
