package vsock

import (
	"fmt"
	"os"
	"slices"
)

// State is the device's state for snapshots and migrations: every
// connection with its credit accounting (5.10.6.3) and the packets not yet
// delivered to the guest. The host ends of the connections are Unix
// sockets, which only a VMM on the same host can take over (SetFiles);
// without them a restored device sends the guest a transport reset event
// and the guest drops its connections (5.10.6.6), as Firecracker does.
type State struct {
	CID      uint64
	NextPort uint32      // the next host port for a host-initiated connection
	Conns    []ConnState // sorted by host port, then guest port
	Pending  []Packet    // the receive queue, oldest first

	// files are the connections' host sockets, indexed by ConnState.File.
	// They travel beside the state (SCM_RIGHTS), never inside it, so no
	// encoding sees them: see SetFiles and HandoverFiles.
	files []*os.File
}

// SetFiles gives a state about to be restored the host sockets of its
// connections (from HandoverFiles on the source), indexed by
// ConnState.File. RestoreState duplicates what it uses; the caller still
// closes them.
func (s *State) SetFiles(files []*os.File) { s.files = files }

// ConnState is one connection's state.
type ConnState struct {
	HostPort, GuestPort uint32
	// Connecting: host-initiated, REQUEST sent, no RESPONSE yet.
	Connecting bool
	// Credit accounting (5.10.6.3): the guest's buffer and how much of it
	// it consumed, what was sent to it, what came from it, what reached the
	// host socket, and the fwd_cnt last advertised.
	PeerBufAlloc, PeerFwdCnt uint32
	TxCnt, RxCnt, FwdCnt     uint32
	Advertised               uint32
	PeerShut                 uint32 // the guest's VIRTIO_VSOCK_SHUTDOWN_* flags
	HostEOF                  bool   // the host socket sends no more
	WriterDone               bool   // the host socket's write side is shut
	CreditQueued             bool   // a CREDIT_UPDATE waits in Pending
	ToHost                   []byte // guest data not yet written to the host socket
	File                     int    // index of the host socket in State.Files
}

// Packet is a packet waiting for a receive buffer.
type Packet struct {
	Conn                int // index into State.Conns; -1: an RST for no connection
	HostPort, GuestPort uint32
	Op                  uint16
	Flags               uint32
	Data                []byte // RW: host data not yet delivered
}

// SaveState returns the device state. When the device is frozen (Freeze)
// it also keeps a duplicate of every connection's host socket for
// HandoverFiles, in the order of State.Conns.
func (d *Device) SaveState() State {
	d.connMu.Lock()
	s := State{CID: d.cid, NextPort: d.nextPort}
	all := d.connListLocked()
	frozen := d.frozen
	closeFiles(d.handover)
	d.handover = nil
	d.connMu.Unlock()
	slices.SortFunc(all, func(a, b *conn) int {
		if a.key.hostPort != b.key.hostPort {
			return int(int64(a.key.hostPort) - int64(b.key.hostPort))
		}
		return int(int64(a.key.guestPort) - int64(b.key.guestPort))
	})
	index := make(map[*conn]int, len(all))
	var files []*os.File
	for _, c := range all {
		cs, ok := c.save()
		if !ok {
			continue
		}
		if frozen {
			f, err := c.uc.File()
			if err != nil {
				// Without its socket the connection cannot move: leave it
				// out, so the guest sees it reset.
				continue
			}
			files = append(files, f)
		}
		cs.File = len(s.Conns)
		index[c] = len(s.Conns)
		s.Conns = append(s.Conns, cs)
	}
	d.rxMu.Lock()
	for _, it := range d.rxq {
		p := Packet{Conn: -1, HostPort: it.key.hostPort, GuestPort: it.key.guestPort, Op: it.op, Flags: it.flags}
		if it.c != nil {
			i, ok := index[it.c]
			if !ok {
				continue // its connection closed
			}
			p.Conn = i
		}
		if it.op == OpRW {
			p.Data = slices.Clone(it.data)
		}
		s.Pending = append(s.Pending, p)
	}
	d.rxMu.Unlock()
	if frozen {
		d.connMu.Lock()
		d.handover = files
		d.connMu.Unlock()
	}
	return s
}

// save captures c; false if it closed.
func (c *conn) save() (ConnState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return ConnState{}, false
	}
	return ConnState{
		HostPort: c.key.hostPort, GuestPort: c.key.guestPort, Connecting: c.state == stateConnecting,
		PeerBufAlloc: c.peerBufAlloc, PeerFwdCnt: c.peerFwdCnt, TxCnt: c.txCnt, RxCnt: c.rxCnt,
		FwdCnt: c.fwdCnt.Load(), Advertised: c.advertised, PeerShut: c.peerShut, HostEOF: c.hostEOF,
		WriterDone: c.writerDone, CreditQueued: c.creditQueued, ToHost: slices.Clone(c.wbuf),
	}, true
}

// RestoreState loads s into a device that has not been activated. With
// files (SetFiles: a same-host migration) it reinstalls every connection on its
// handed-over socket, frozen until Thaw; otherwise the connections are
// gone and the guest is sent a transport reset event (5.10.6.6).
func (d *Device) RestoreState(s State) error {
	if s.CID != d.cid {
		return fmt.Errorf("vsock: restore: snapshot guest CID %d, device has %d", s.CID, d.cid)
	}
	d.dropAll()
	d.connMu.Lock()
	if s.NextPort >= firstHostPort {
		d.nextPort = s.NextPort
	}
	d.connMu.Unlock()
	if len(s.Conns) == 0 && s.files != nil {
		return nil // nothing to reinstall, nothing for the guest to drop
	}
	if s.files == nil {
		d.resetEvent.Store(true)
		select {
		case d.eventWake <- struct{}{}:
		default:
		}
		return nil
	}
	if err := d.reinstall(&s); err != nil {
		d.dropAll()
		d.connMu.Lock()
		d.frozen = false
		d.connMu.Unlock()
		return fmt.Errorf("vsock: restore: %w", err)
	}
	return nil
}
