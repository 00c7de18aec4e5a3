package vsock

import (
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
)

// serveTx takes the guest's packets (5.10.6.4).
func (d *Device) serveTx(ctx *virtio.ActivateContext, stop <-chan struct{}) {
	var hb [HeaderSize]byte
	virtio.ServeQueue(ctx, QueueTx, stop, func(ch *virtqueue.Chain) uint32 {
		d.handle(ch, &hb)
		return 0
	})
}

// handle processes one packet from the guest.
func (d *Device) handle(ch *virtqueue.Chain, hb *[HeaderSize]byte) {
	d.txPackets.Add(1)
	if ch.ReadLen < HeaderSize {
		d.badPackets.Add(1)
		return
	}
	ch.ReadAt(hb[:], 0)
	h, _ := ParseHeader(hb[:])
	if h.SrcCID != d.cid || h.DstCID != HostCID {
		// Not from this guest or not for the host: there is nobody to
		// answer (Firecracker drops these too).
		d.badPackets.Add(1)
		return
	}
	key := connKey{hostPort: h.DstPort, guestPort: h.SrcPort}
	if h.Type != TypeStream || h.Len > maxPayload || uint64(h.Len) > ch.ReadLen-HeaderSize {
		d.badPackets.Add(1)
		if c := d.lookup(key); c != nil {
			d.closeConn(c, true)
		} else if h.Op != OpRST {
			d.refuse(key)
		}
		return
	}
	switch h.Op {
	case OpRequest:
		d.guestConnect(key, &h)
		return
	case OpRST:
		if c := d.lookup(key); c != nil {
			d.closeConn(c, false)
		}
		return
	}
	c := d.lookup(key)
	if c == nil {
		// 5.10.6.4: a packet for no connection is answered with RST.
		d.refuse(key)
		return
	}
	c.updateCredit(&h)
	switch h.Op {
	case OpResponse:
		c.mu.Lock()
		ok := c.state == stateConnecting
		if ok {
			c.state = stateEstablished
			c.pumps.Add(1) // the greeting; awaitResponse ends it
			close(c.responded)
		}
		c.mu.Unlock()
		if !ok {
			d.closeConn(c, true)
		}
	case OpRW:
		c.receive(ch, h.Len)
	case OpCreditUpdate:
		// updateCredit did it.
	case OpCreditRequest:
		c.mu.Lock()
		queue := !c.creditQueued
		c.creditQueued = true
		c.mu.Unlock()
		if queue {
			d.enqueue(&rxItem{c: c, op: OpCreditUpdate, key: key})
		}
	case OpShutdown:
		c.mu.Lock()
		c.peerShut |= h.Flags & (ShutdownRcv | ShutdownSend)
		full := c.peerShut == ShutdownRcv|ShutdownSend && (c.writerDone || c.state == stateConnecting)
		c.cond.Broadcast()
		c.mu.Unlock()
		if full {
			d.closeConn(c, true)
		}
	default:
		d.badPackets.Add(1)
		d.closeConn(c, true)
	}
}

// receive queues n payload bytes of ch for the host socket; a guest that
// sends more than the credit it was given loses the connection.
func (c *conn) receive(ch *virtqueue.Chain, n uint32) {
	c.mu.Lock()
	if c.state != stateEstablished || c.peerShut&ShutdownSend != 0 {
		c.mu.Unlock()
		c.d.closeConn(c, true)
		return
	}
	buffered := c.rxCnt - c.fwdCnt.Load()
	if uint64(buffered)+uint64(n) > BufAlloc {
		c.mu.Unlock()
		c.d.badPackets.Add(1)
		c.d.closeConn(c, true)
		return
	}
	l := len(c.wbuf)
	if cap(c.wbuf) < l+int(n) {
		nb := make([]byte, l, max(2*cap(c.wbuf), l+int(n)))
		copy(nb, c.wbuf)
		c.wbuf = nb
	}
	c.wbuf = c.wbuf[:l+int(n)]
	ch.ReadAt(c.wbuf[l:], HeaderSize)
	c.rxCnt += n
	c.cond.Broadcast()
	c.mu.Unlock()
}

// refuse answers a packet for no connection with RST.
func (d *Device) refuse(key connKey) {
	d.refused.Add(1)
	d.enqueue(&rxItem{op: OpRST, key: key})
}
