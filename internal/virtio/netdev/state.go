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
	Announce bool // VIRTIO_NET_S_ANNOUNCE not yet acknowledged
	Pairs    int  // queue pairs the device has
	Active   int  // queue pairs the driver uses
}

// SaveState returns the device state.
func (d *Device) SaveState() State {
	d.activeMu.Lock()
	defer d.activeMu.Unlock()
	return State{MAC: d.mac, MTU: d.mtu, Features: d.features, LinkUp: d.linkUp.Load(),
		Announce: d.announce.Load(), Pairs: len(d.bes), Active: d.active}
}

// RestoreState loads s into a device that has not been activated; the
// guest keeps the MAC it had.
func (d *Device) RestoreState(s State) error {
	if s.Features != d.features || s.MTU != d.mtu || s.Pairs != len(d.bes) {
		return fmt.Errorf("netdev: restore: snapshot features %#x MTU %d %d pairs, device offers %#x MTU %d %d pairs",
			s.Features, s.MTU, s.Pairs, d.features, d.mtu, len(d.bes))
	}
	if s.Active < 1 || s.Active > s.Pairs {
		return fmt.Errorf("netdev: restore: %d active pairs of %d", s.Active, s.Pairs)
	}
	if s.MAC[0]&1 != 0 {
		return fmt.Errorf("netdev: restore: multicast MAC % x", s.MAC)
	}
	d.mac = s.MAC
	d.linkUp.Store(s.LinkUp)
	d.announce.Store(s.Announce)
	d.activeMu.Lock()
	d.active = s.Active
	d.activeMu.Unlock()
	return nil
}
