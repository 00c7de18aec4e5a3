package netdev

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// rxState is the receive worker's: a frame read from the backend and not
// yet delivered stays here across a pause.
type rxState struct {
	buf     []byte // header and frame; one byte spare to detect oversize
	pending int    // bytes of buf holding an undelivered frame
	first   virtqueue.Chain
	cur     virtqueue.Chain
	heads   []uint16 // chains of the frame being delivered, in order
	lens    []uint32
}

func (r *rxState) init(queueSize uint16) {
	r.buf = make([]byte, HeaderSize+MaxFrame+1)
	r.heads = make([]uint16, 0, queueSize)
	r.lens = make([]uint32, 0, queueSize)
}

// retryDelay paces reads after an unexpected backend error.
const retryDelay = 10 * time.Millisecond

// serveRx reads frames from the backend and delivers each into the
// driver's receive buffers (5.1.6.3), waiting for buffers when there are
// none.
func (d *Device) serveRx(ctx *virtio.ActivateContext, pair int, stop <-chan struct{}) {
	r := &d.rx[pair]
	q := ctx.Queues[2*pair]
	be := d.bes[pair]
	for {
		if r.pending == 0 {
			n, err := be.ReadFrame(r.buf)
			if err != nil {
				select {
				case <-stop:
					return
				default:
				}
				if isTimeout(err) {
					continue
				}
				if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
					// The backend is gone: nothing more will arrive.
					<-stop
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(retryDelay):
				}
				continue
			}
			if n < HeaderSize+minFrame || n > HeaderSize+MaxFrame || !fixRx(r.buf, ctx.Features) {
				d.rxDrops.Add(1)
				continue
			}
			r.pending = n
		}
		if !d.deliver(ctx, r, 2*pair, q, stop) {
			return
		}
	}
}

// deliver puts the pending frame into receive buffers: one chain, or with
// VIRTIO_NET_F_MRG_RXBUF as many as it needs, the count in the first
// chain's num_buffers (5.1.6.3.2). It returns false when the worker must
// stop.
func (d *Device) deliver(ctx *virtio.ActivateContext, r *rxState, qi int, q *virtqueue.Queue, stop <-chan struct{}) bool {
	frame := r.buf[:r.pending]
	mrg := ctx.Features&FeatureMrgRxbuf != 0
	r.heads, r.lens = r.heads[:0], r.lens[:0]
	off := 0
	for off < len(frame) {
		c := &r.first
		if len(r.heads) > 0 {
			c = &r.cur
		}
		ok, err := q.Pop(c)
		if err != nil {
			ctx.NeedsReset(err)
			return false
		}
		if !ok {
			if q.EnableNotify() {
				continue
			}
			select {
			case <-stop:
				// Mid-frame: hand back what was filled, truncated.
				if len(r.heads) > 0 {
					d.finish(ctx, r, qi, q)
					d.rxDrops.Add(1)
					r.pending = 0
				}
				return false
			case <-ctx.Notify[qi]:
			}
			q.DisableNotify()
			continue
		}
		if len(r.heads) == 0 && (c.WriteLen < HeaderSize || (!mrg && c.WriteLen < uint64(len(frame)))) {
			// The buffer cannot hold the header (or, without mergeable
			// buffers, the frame): the frame is dropped and the buffer
			// returned empty.
			if err := q.PushHead(c.Head, 0, nil); err != nil {
				ctx.NeedsReset(err)
				return false
			}
			d.interrupt(ctx, qi, q)
			d.rxDrops.Add(1)
			r.pending = 0
			return true
		}
		n := min(uint64(len(frame)-off), c.WriteLen)
		c.WriteAt(frame[off:off+int(n)], 0)
		off += int(n)
		r.heads = append(r.heads, c.Head)
		r.lens = append(r.lens, uint32(n))
		if len(r.heads) == int(q.Size()) && off < len(frame) {
			// Every buffer of the queue is not enough.
			d.rxDrops.Add(1)
			break
		}
	}
	if off == len(frame) {
		d.rxPackets.Add(1)
		d.rxBytes.Add(uint64(len(frame) - HeaderSize))
	}
	r.pending = 0
	return d.finish(ctx, r, qi, q)
}

// finish writes num_buffers into the first chain and returns the chains
// of the frame in order.
func (d *Device) finish(ctx *virtio.ActivateContext, r *rxState, qi int, q *virtqueue.Queue) bool {
	var nb [2]byte
	binary.LittleEndian.PutUint16(nb[:], uint16(len(r.heads)))
	r.first.WriteAt(nb[:], 10)
	for i, h := range r.heads {
		if err := q.PushHead(h, r.lens[i], nil); err != nil {
			ctx.NeedsReset(err)
			return false
		}
	}
	r.heads, r.lens = r.heads[:0], r.lens[:0]
	d.interrupt(ctx, qi, q)
	return true
}

func (d *Device) interrupt(ctx *virtio.ActivateContext, qi int, q *virtqueue.Queue) {
	if q.NeedInterrupt() {
		ctx.Interrupt(qi)
	}
}
