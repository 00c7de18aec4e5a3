package vsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Handing connections over to another VMM on the same host: the source
// freezes the device (no byte moves between the guest and the host
// sockets, none is lost), saves its state and passes duplicates of the
// host sockets along (HandoverFiles); the destination restores the state
// with those sockets and thaws once it owns the VM. The host processes at
// the other ends see nothing but a pause.

// Freeze stops moving data between the guest and the host sockets,
// keeping every connection open, and returns once nothing moves: data
// read from a host socket but not delivered stays queued for the guest,
// guest data not yet written stays buffered, both in SaveState. Connections
// made meanwhile wait too. Thaw undoes it.
func (d *Device) Freeze() {
	d.connMu.Lock()
	d.frozen = true
	all := d.connListLocked()
	d.connMu.Unlock()
	for _, c := range all {
		c.mu.Lock()
		c.frozen = true
		c.cond.Broadcast()
		c.mu.Unlock()
		// Wake a pump blocked in the socket; the socket itself is not
		// touched (a deadline is the runtime's, not the kernel's).
		past := time.Unix(1, 0)
		c.uc.SetReadDeadline(past)
		c.uc.SetWriteDeadline(past)
	}
	for _, c := range all {
		c.pumps.Wait()
	}
}

// Thaw lets frozen connections (after Freeze, or restored with their
// sockets) move data again, and drops socket duplicates SaveState kept
// and nobody took.
func (d *Device) Thaw() {
	d.connMu.Lock()
	d.frozen = false
	closeFiles(d.handover)
	d.handover = nil
	all := d.connListLocked()
	d.connMu.Unlock()
	for _, c := range all {
		c.mu.Lock()
		if !c.frozen {
			c.mu.Unlock()
			continue // its pumps run already
		}
		c.uc.SetDeadline(time.Time{})
		greet := c.greet
		c.frozen, c.greet = false, false
		c.startPumpsLocked()
		c.cond.Broadcast()
		c.mu.Unlock()
		if greet {
			d.bg.Add(1)
			go func() {
				defer d.bg.Done()
				d.awaitResponse(c)
			}()
		}
	}
}

// ErrNotFrozen means HandoverFiles was called without Freeze and SaveState.
var ErrNotFrozen = errors.New("vsock: connections are not frozen and saved")

// HandoverFiles returns the host sockets of the connections in the last
// SaveState taken while frozen, indexed by ConnState.File; the caller
// owns (and closes) them. The device keeps its own copies: the
// connections stay usable here until the device closes.
func (d *Device) HandoverFiles() ([]*os.File, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if !d.frozen {
		return nil, ErrNotFrozen
	}
	files := d.handover
	d.handover = nil
	return files, nil
}

// closeFiles closes unwanted duplicates; errors do not matter then.
func closeFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// knownOp reports whether op may wait in the receive queue.
func knownOp(op uint16) bool {
	switch op {
	case OpRequest, OpResponse, OpRST, OpShutdown, OpRW, OpCreditUpdate:
		return true
	}
	return false
}

// reinstall recreates s's connections on s.files, frozen, and the receive
// queue. Every value is checked: the state crossed a process boundary.
func (d *Device) reinstall(s *State) error {
	if len(s.Conns) > MaxConnections {
		return fmt.Errorf("%d connections, at most %d", len(s.Conns), MaxConnections)
	}
	conns := make([]*conn, len(s.Conns))
	used := make([]bool, len(s.files))
	d.connMu.Lock()
	d.frozen = true
	d.connMu.Unlock()
	for i := range s.Conns {
		cs := &s.Conns[i]
		if cs.File < 0 || cs.File >= len(s.files) || used[cs.File] || s.files[cs.File] == nil {
			return fmt.Errorf("connection %d: no host socket (file %d of %d)", i, cs.File, len(s.files))
		}
		used[cs.File] = true
		if len(cs.ToHost) > BufAlloc || cs.RxCnt-cs.FwdCnt != uint32(len(cs.ToHost)) {
			return fmt.Errorf("connection %d: %d bytes for the host, counters say %d", i, len(cs.ToHost), cs.RxCnt-cs.FwdCnt)
		}
		if cs.PeerShut&^(ShutdownRcv|ShutdownSend) != 0 {
			return fmt.Errorf("connection %d: shutdown flags %#x", i, cs.PeerShut)
		}
		fc, err := net.FileConn(s.files[cs.File])
		if err != nil {
			return fmt.Errorf("connection %d: host socket: %w", i, err)
		}
		uc, ok := fc.(*net.UnixConn)
		if !ok {
			fc.Close()
			return fmt.Errorf("connection %d: host socket is a %T, not a Unix socket", i, fc)
		}
		state := stateEstablished
		if cs.Connecting {
			state = stateConnecting
		}
		c := d.newConn(connKey{hostPort: cs.HostPort, guestPort: cs.GuestPort}, uc, state)
		c.peerBufAlloc, c.peerFwdCnt, c.txCnt, c.rxCnt = cs.PeerBufAlloc, cs.PeerFwdCnt, cs.TxCnt, cs.RxCnt
		c.fwdCnt.Store(cs.FwdCnt)
		c.advertised, c.peerShut, c.hostEOF, c.writerDone = cs.Advertised, cs.PeerShut, cs.HostEOF, cs.WriterDone
		c.creditQueued = cs.CreditQueued
		c.wbuf = append([]byte(nil), cs.ToHost...)
		c.running, c.greet = !cs.Connecting, cs.Connecting
		if !cs.Connecting {
			close(c.responded)
		}
		if !d.register(c) {
			uc.Close()
			return fmt.Errorf("connection %d: ports %d/%d taken twice", i, cs.HostPort, cs.GuestPort)
		}
		conns[i] = c
	}
	d.rxMu.Lock()
	defer d.rxMu.Unlock()
	for i, p := range s.Pending {
		it := &rxItem{key: connKey{hostPort: p.HostPort, guestPort: p.GuestPort}, op: p.Op, flags: p.Flags}
		switch {
		case !knownOp(p.Op):
			return fmt.Errorf("queued packet %d: operation %d", i, p.Op)
		case p.Conn < -1 || p.Conn >= len(conns):
			return fmt.Errorf("queued packet %d: connection %d of %d", i, p.Conn, len(conns))
		case p.Op != OpRW && len(p.Data) > 0, len(p.Data) > readChunk:
			return fmt.Errorf("queued packet %d: %d bytes of data for operation %d", i, len(p.Data), p.Op)
		}
		if p.Conn >= 0 {
			it.c = conns[p.Conn]
			if it.key != it.c.key {
				return fmt.Errorf("queued packet %d: ports %v are not its connection's %v", i, it.key, it.c.key)
			}
			if p.Op == OpRW {
				it.c.inflight++
			}
		} else {
			if p.Op != OpRST || d.refusals >= maxRefusals {
				return fmt.Errorf("queued packet %d: operation %d without a connection", i, p.Op)
			}
			d.refusals++
		}
		if p.Op == OpRW {
			it.data = append([]byte(nil), p.Data...)
		}
		d.rxq = append(d.rxq, it)
	}
	return nil
}
