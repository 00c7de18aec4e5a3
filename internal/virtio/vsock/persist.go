package vsock

import (
	"fmt"

	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
)

// StateKind is the name vsock's State is registered under (virtio.RegisterState).
const StateKind = "vsock"

func init() { virtio.RegisterState(StateKind, func() virtio.DeviceState { return new(State) }) }

// The state is versioned on its own, behind a tag no guest CID can equal
// (CIDs are below 2^32): version 1 was the CID alone, version 2 adds the
// connections, their credit accounting (virtio 1.2 5.10.6.3) and the
// packets queued for the guest.
const (
	stateTag          = 0x56534F434B000000 // "VSOCK" in the high bytes
	stateVersion      = 2
	maxPending        = 2*MaxConnections + 1024 // per connection a data and a control packet, plus RSTs
	maxPacket         = 64 << 10                // the device reads at most this much at once
	minConnStateBytes = 9*4 + 4 + 4 + 8         // counters, flags, ToHost length, File
	minPacketBytes    = 8 + 4 + 4 + 2 + 4 + 4   // Conn, ports, Op, Flags, Data length
)

// StateKind implements virtio.DeviceState.
func (s *State) StateKind() string { return StateKind }

// EncodeState implements virtio.DeviceState. The host sockets (SetFiles)
// are not part of it.
func (s *State) EncodeState(e *snapshot.Encoder) {
	e.U64(stateTag | stateVersion)
	e.U64(s.CID)
	e.U32(s.NextPort)
	e.Len(len(s.Conns))
	for i := range s.Conns {
		c := &s.Conns[i]
		for _, v := range [...]uint32{c.HostPort, c.GuestPort, c.PeerBufAlloc, c.PeerFwdCnt, c.TxCnt, c.RxCnt, c.FwdCnt, c.Advertised, c.PeerShut} {
			e.U32(v)
		}
		for _, b := range [...]bool{c.Connecting, c.HostEOF, c.WriterDone, c.CreditQueued} {
			e.Bool(b)
		}
		e.Blob(c.ToHost)
		e.Int(c.File)
	}
	e.Len(len(s.Pending))
	for i := range s.Pending {
		p := &s.Pending[i]
		e.Int(p.Conn + 1) // -1 (no connection) is 0
		e.U32(p.HostPort)
		e.U32(p.GuestPort)
		e.U16(p.Op)
		e.U32(p.Flags)
		e.Blob(p.Data)
	}
}

// DecodeState implements virtio.DeviceState; a state of another version
// fails with snapshot.ErrStateFormat.
func (s *State) DecodeState(d *snapshot.Decoder) error {
	tag := d.U64()
	if err := d.Err(); err != nil {
		return err
	}
	if tag < 1<<32 {
		return fmt.Errorf("%w: vsock state version 1 (an older govisor); this govisor reads version %d",
			snapshot.ErrStateFormat, stateVersion)
	}
	if v := tag &^ stateTag; tag&stateTag != stateTag || v != stateVersion {
		return fmt.Errorf("%w: vsock state tag %#x, this govisor reads version %d", snapshot.ErrStateFormat, tag, stateVersion)
	}
	s.CID = d.U64()
	s.NextPort = d.U32()
	if n := d.Len("Vsock.Conns", MaxConnections, minConnStateBytes); n > 0 {
		s.Conns = make([]ConnState, n)
		for i := range s.Conns {
			c := &s.Conns[i]
			for _, p := range [...]*uint32{&c.HostPort, &c.GuestPort, &c.PeerBufAlloc, &c.PeerFwdCnt, &c.TxCnt, &c.RxCnt, &c.FwdCnt, &c.Advertised, &c.PeerShut} {
				*p = d.U32()
			}
			for _, p := range [...]*bool{&c.Connecting, &c.HostEOF, &c.WriterDone, &c.CreditQueued} {
				*p = d.Bool()
			}
			c.ToHost = d.Blob("Vsock.ToHost", BufAlloc)
			c.File = d.Int("Vsock.File", MaxConnections)
		}
	}
	if n := d.Len("Vsock.Pending", maxPending, minPacketBytes); n > 0 {
		s.Pending = make([]Packet, n)
		for i := range s.Pending {
			p := &s.Pending[i]
			p.Conn = d.Int("Vsock.Pending.Conn", MaxConnections) - 1
			p.HostPort = d.U32()
			p.GuestPort = d.U32()
			p.Op = d.U16()
			p.Flags = d.U32()
			p.Data = d.Blob("Vsock.Pending.Data", maxPacket)
		}
	}
	return d.Err()
}

// SaveDeviceState implements virtio.Stateful.
func (d *Device) SaveDeviceState() virtio.DeviceState {
	s := d.SaveState()
	return &s
}

// RestoreDeviceState implements virtio.Stateful.
func (d *Device) RestoreDeviceState(s virtio.DeviceState) error {
	return virtio.RestoreAs(s, "a vsock device", d.RestoreState)
}
