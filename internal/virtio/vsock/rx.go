package vsock

import (
	"encoding/binary"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// rxItem is a packet waiting for a receive buffer. Credit fields are
// filled when it is sent, so they are current.
type rxItem struct {
	c     *conn // nil for an RST to an unknown connection
	key   connKey
	op    uint16
	flags uint32
	data  []byte // RW payload left to send
}

// maxRefusals bounds the RSTs to unknown connections waiting in the
// receive queue: a guest that sends bad packets without taking the
// answers does not grow the queue without bound.
const maxRefusals = 1024

// enqueue appends it to the receive queue and wakes the worker.
func (d *Device) enqueue(it *rxItem) {
	d.rxMu.Lock()
	if it.c == nil {
		if d.refusals >= maxRefusals {
			d.rxMu.Unlock()
			return
		}
		d.refusals++
	}
	d.rxq = append(d.rxq, it)
	d.rxMu.Unlock()
	select {
	case d.rxWake <- struct{}{}:
	default:
	}
}

func (d *Device) peekRx() *rxItem {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if len(d.rxq) == 0 {
		return nil
	}
	return d.rxq[0]
}

func (d *Device) popRx() {
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	if len(d.rxq) > 0 {
		if d.rxq[0].c == nil {
			d.refusals--
		}
		d.rxq[0] = nil
		d.rxq = d.rxq[1:]
	}
}

// header builds it's header; for RW it takes up to room payload bytes.
func (d *Device) header(it *rxItem, room uint64) Header {
	h := Header{
		SrcCID: HostCID, DstCID: d.cid, SrcPort: it.key.hostPort, DstPort: it.key.guestPort,
		Type: TypeStream, Op: it.op, Flags: it.flags, BufAlloc: BufAlloc,
	}
	if it.op == OpRW {
		h.Len = uint32(min(uint64(len(it.data)), room))
	}
	if c := it.c; c != nil {
		h.FwdCnt = c.fwdCnt.Load()
		c.mu.Lock()
		c.advertised = h.FwdCnt
		if it.op == OpCreditUpdate {
			c.creditQueued = false
		}
		c.mu.Unlock()
	}
	return h
}

// stale reports whether it no longer needs sending: data or credit for
// a connection that closed or whose guest stopped receiving.
func stale(it *rxItem) bool {
	c := it.c
	if c == nil || it.op == OpRST {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateClosed || (it.op == OpRW && c.peerShut&ShutdownRcv != 0)
}

// serveRx delivers queued packets into the driver's receive buffers
// (5.10.6.4), splitting data to fit them.
func (d *Device) serveRx(ctx *virtio.ActivateContext, stop <-chan struct{}) {
	q := ctx.Queues[QueueRx]
	var ch virtqueue.Chain
	var hb [HeaderSize]byte
	for {
		it := d.peekRx()
		if it == nil {
			select {
			case <-stop:
				return
			case <-d.rxWake:
			}
			continue
		}
		if stale(it) {
			d.done(it)
			continue
		}
		ok, err := q.Pop(&ch)
		if err != nil {
			ctx.NeedsReset(err)
			return
		}
		if !ok {
			if q.EnableNotify() {
				continue
			}
			select {
			case <-stop:
				return
			case <-ctx.Notify[QueueRx]:
			}
			q.DisableNotify()
			continue
		}
		if ch.WriteLen < HeaderSize {
			// Too small for a header: returned unused.
			if err := q.PushHead(ch.Head, 0, nil); err != nil {
				ctx.NeedsReset(err)
				return
			}
			continue
		}
		h := d.header(it, ch.WriteLen-HeaderSize)
		h.Put(hb[:])
		ch.WriteAt(hb[:], 0)
		if h.Len > 0 {
			ch.WriteAt(it.data[:h.Len], HeaderSize)
			it.data = it.data[h.Len:]
		}
		if err := q.PushHead(ch.Head, HeaderSize+h.Len, nil); err != nil {
			ctx.NeedsReset(err)
			return
		}
		d.rxPackets.Add(1)
		if q.NeedInterrupt() {
			ctx.Interrupt(QueueRx)
		}
		if len(it.data) == 0 {
			d.done(it)
		}
	}
}

// done removes the head item and tells a waiting reader.
func (d *Device) done(it *rxItem) {
	d.popRx()
	if c := it.c; it.op == OpRW && c != nil {
		c.mu.Lock()
		if c.inflight > 0 {
			c.inflight--
		}
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// serveEvent sends a transport reset event when one is due (5.10.6.6).
func (d *Device) serveEvent(ctx *virtio.ActivateContext, stop <-chan struct{}) {
	q := ctx.Queues[QueueEvent]
	var ch virtqueue.Chain
	for {
		if d.resetEvent.Load() {
			ok, err := q.Pop(&ch)
			if err != nil {
				ctx.NeedsReset(err)
				return
			}
			if ok {
				var ev [4]byte
				binary.LittleEndian.PutUint32(ev[:], EventTransportReset)
				n, _ := ch.WriteAt(ev[:], 0)
				if err := q.PushHead(ch.Head, uint32(n), nil); err != nil {
					ctx.NeedsReset(err)
					return
				}
				if q.NeedInterrupt() {
					ctx.Interrupt(QueueEvent)
				}
				d.resetEvent.Store(false)
				continue
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Notify[QueueEvent]:
		case <-d.eventWake:
		}
	}
}
