package vsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
)

// connKey names a connection by its two ports (the CIDs are fixed).
type connKey struct{ hostPort, guestPort uint32 }

// Connection states.
const (
	stateConnecting  = iota // host-initiated: REQUEST sent, no RESPONSE yet
	stateEstablished        // data flows
	stateClosed
)

// conn is one stream connection between a guest port and a host Unix
// socket, with the credit accounting of 5.10.6.3.
type conn struct {
	d   *Device
	key connKey
	uc  *net.UnixConn

	mu           sync.Mutex
	cond         *sync.Cond
	state        int
	peerBufAlloc uint32 // guest's receive buffer
	peerFwdCnt   uint32 // bytes the guest consumed
	txCnt        uint32 // bytes sent to the guest, including in flight
	rxCnt        uint32 // bytes received from the guest
	advertised   uint32 // fwdCnt last sent to the guest
	wbuf, spare  []byte // guest data waiting for the host socket
	peerShut     uint32 // the guest's shutdown flags
	hostEOF      bool   // the host socket will send no more
	creditQueued bool   // a CREDIT_UPDATE waits in the rx queue
	writerDone   bool   // writeHost half-closed the host socket and ended
	inflight     int    // RW packets of this connection in the rx queue
	running      bool   // established and started: the pumps belong to it
	frozen       bool   // the pumps stay stopped (Freeze, or restored)
	greet        bool   // restored while host-initiated and connecting

	pumps     sync.WaitGroup // readHost, writeHost and a greeting in progress
	fwdCnt    atomic.Uint32  // bytes written to the host socket
	closedCh  chan struct{}  // closed when the connection closes
	responded chan struct{}  // host-initiated: the guest accepted
}

func (d *Device) newConn(key connKey, uc *net.UnixConn, state int) *conn {
	c := &conn{
		d: d, key: key, uc: uc, state: state,
		closedCh: make(chan struct{}), responded: make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// register adds c to the table; false if the table is full, the key is
// taken or the device closed.
func (d *Device) register(c *conn) bool {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if d.closed || len(d.conns) >= MaxConnections || d.conns[c.key] != nil {
		return false
	}
	c.frozen = d.frozen // its pumps wait for Thaw
	d.conns[c.key] = c
	return true
}

func (d *Device) lookup(k connKey) *conn {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	return d.conns[k]
}

// credit is how many bytes the guest can take now (5.10.6.3.1); c.mu held.
func (c *conn) credit() uint32 {
	inflight := c.txCnt - c.peerFwdCnt
	if inflight >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inflight
}

// updateCredit records the guest's buffer space from a packet header.
func (c *conn) updateCredit(h *Header) {
	c.mu.Lock()
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	c.cond.Broadcast()
	c.mu.Unlock()
}

// start runs the two pumps of an established connection (later, at
// Thaw, if it is frozen).
func (c *conn) start() {
	c.d.accepted.Add(1)
	c.mu.Lock()
	c.running = true
	c.startPumpsLocked()
	c.mu.Unlock()
}

// startPumpsLocked starts the pumps that still have work, unless frozen;
// c.mu held (so that Freeze's wait cannot miss them).
func (c *conn) startPumpsLocked() {
	if c.frozen || !c.running || c.state != stateEstablished {
		return
	}
	if !c.hostEOF && c.peerShut&ShutdownRcv == 0 {
		c.pumps.Add(1)
		c.d.bg.Add(1)
		go c.readHost()
	}
	if !c.writerDone {
		c.pumps.Add(1)
		c.d.bg.Add(1)
		go c.writeHost()
	}
}

// readHost copies host socket data to the guest as RW packets, never
// more than the guest's credit, one packet in the rx queue at a time.
func (c *conn) readHost() {
	defer c.d.bg.Done()
	defer c.pumps.Done()
	rbuf := make([]byte, readChunk)
	for {
		c.mu.Lock()
		for c.state == stateEstablished && !c.frozen && c.peerShut&ShutdownRcv == 0 && (c.inflight > 0 || c.credit() == 0) {
			c.cond.Wait()
		}
		if c.state != stateEstablished || c.frozen || c.peerShut&ShutdownRcv != 0 {
			c.mu.Unlock()
			return
		}
		n := min(c.credit(), readChunk)
		c.mu.Unlock()
		r, err := c.uc.Read(rbuf[:n])
		if r > 0 {
			c.mu.Lock()
			c.txCnt += uint32(r)
			c.inflight++
			c.mu.Unlock()
			// rbuf is read into again only once this packet is delivered.
			c.d.enqueue(&rxItem{c: c, op: OpRW, data: rbuf[:r], key: c.key})
		}
		if err != nil {
			if c.isFrozen() && errors.Is(err, os.ErrDeadlineExceeded) {
				return // Freeze stopped the read; the socket stays as it is
			}
			if errors.Is(err, io.EOF) {
				// The host will send no more (5.10.6.5).
				c.mu.Lock()
				c.hostEOF = true
				done := c.peerShut == ShutdownRcv|ShutdownSend
				c.mu.Unlock()
				if done {
					c.d.closeConn(c, true)
					return
				}
				c.d.enqueue(&rxItem{c: c, op: OpShutdown, flags: ShutdownSend, key: c.key})
				return
			}
			c.d.closeConn(c, true)
			return
		}
	}
}

func (c *conn) isFrozen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frozen
}

// writeHost copies guest data to the host socket and returns credit to
// the guest as the socket takes it.
func (c *conn) writeHost() {
	defer c.d.bg.Done()
	defer c.pumps.Done()
	for {
		c.mu.Lock()
		for c.state == stateEstablished && !c.frozen && len(c.wbuf) == 0 && c.peerShut&ShutdownSend == 0 {
			c.cond.Wait()
		}
		if c.state != stateEstablished || c.frozen {
			c.mu.Unlock()
			return
		}
		if len(c.wbuf) == 0 {
			// The guest sends no more and everything is written: pass the
			// half close on, or finish if the guest is fully gone.
			full := c.peerShut&ShutdownRcv != 0
			c.writerDone = !full
			c.mu.Unlock()
			if full {
				c.d.closeConn(c, true)
			} else {
				c.uc.CloseWrite()
			}
			return
		}
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		c.mu.Unlock()
		if n, err := c.uc.Write(buf); err != nil {
			if c.isFrozen() && errors.Is(err, os.ErrDeadlineExceeded) {
				// Freeze cut the write short: what is left goes first
				// when the connection moves on (here or on another VMM).
				c.fwdCnt.Add(uint32(n))
				c.mu.Lock()
				c.wbuf = append(append([]byte(nil), buf[n:]...), c.wbuf...)
				c.mu.Unlock()
				return
			}
			c.d.closeConn(c, true)
			return
		}
		fwd := c.fwdCnt.Add(uint32(len(buf)))
		c.mu.Lock()
		c.spare = buf[:0]
		// Tell the guest about freed space before it can run out
		// (5.10.6.3): Linux does not ask for credit.
		update := fwd-c.advertised >= BufAlloc/4 && !c.creditQueued
		if update {
			c.creditQueued = true
		}
		c.mu.Unlock()
		if update {
			c.d.enqueue(&rxItem{c: c, op: OpCreditUpdate, key: c.key})
		}
	}
}

// closeConn closes c once; with rst it tells the guest with RST.
func (d *Device) closeConn(c *conn, rst bool) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	close(c.closedCh)
	c.cond.Broadcast()
	c.mu.Unlock()
	d.connMu.Lock()
	if d.conns[c.key] == c {
		delete(d.conns, c.key)
	}
	d.connMu.Unlock()
	c.uc.Close()
	if rst {
		d.enqueue(&rxItem{op: OpRST, key: c.key})
	}
}
