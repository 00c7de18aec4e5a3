package netdev

import (
	"fmt"
)

// State is the device's state for snapshots and live migration. A frame
// read from the backend and not yet delivered is not kept (the network
// may drop it).
type State struct {
	MAC      [6]byte
	MTU      uint16
	Features uint64
	LinkUp   bool
}

// SaveState returns the device state.
func (d *Device) SaveState() State {
	return State{MAC: d.mac, MTU: d.mtu, Features: d.features, LinkUp: d.linkUp.Load()}
}

// RestoreState loads s into a device that has not been activated; the
// guest keeps the MAC it had.
func (d *Device) RestoreState(s State) error {
	if s.Features != d.features || s.MTU != d.mtu {
		return fmt.Errorf("netdev: restore: snapshot features %#x MTU %d, device offers %#x MTU %d", s.Features, s.MTU, d.features, d.mtu)
	}
	if s.MAC[0]&1 != 0 {
		return fmt.Errorf("netdev: restore: multicast MAC % x", s.MAC)
	}
	d.mac = s.MAC
	d.linkUp.Store(s.LinkUp)
	return nil
}
