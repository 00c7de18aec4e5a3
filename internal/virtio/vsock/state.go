package vsock

import "fmt"

// State is the device's state for snapshots. Connections to host
// sockets cannot be carried over, so a restored device sends the guest a
// transport reset event and the guest drops its connections (5.10.6.6),
// as Firecracker does.
type State struct {
	CID uint64
}

// SaveState returns the device state.
func (d *Device) SaveState() State { return State{CID: d.cid} }

// RestoreState loads s into a device that has not been activated and
// arranges the transport reset event.
func (d *Device) RestoreState(s State) error {
	if s.CID != d.cid {
		return fmt.Errorf("vsock: restore: snapshot guest CID %d, device has %d", s.CID, d.cid)
	}
	d.dropAll()
	d.resetEvent.Store(true)
	select {
	case d.eventWake <- struct{}{}:
	default:
	}
	return nil
}
