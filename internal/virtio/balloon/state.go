package balloon

import "fmt"

// State is the balloon's state for snapshots and live migration.
type State struct {
	Features  uint64
	Target    uint32
	Actual    uint32
	StatsHeld bool   // the device holds the driver's stats buffer
	StatsHead uint16 // its head
	Stats     Stats
}

// SaveState returns the device state. The transport stops the device
// around SaveState, so the stats buffer position is settled.
func (d *Device) SaveState() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		Features: d.features, Target: d.target.Load(), Actual: d.actual.Load(),
		StatsHeld: d.statsHeld, StatsHead: d.statsHead, Stats: d.Stats(),
	}
}

// RestoreState loads s into a device that has not been activated.
func (d *Device) RestoreState(s State) error {
	if s.Features != d.features {
		return fmt.Errorf("balloon: restore: snapshot features %#x, device offers %#x", s.Features, d.features)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target.Store(s.Target)
	d.actual.Store(s.Actual)
	d.statsHeld, d.statsHead = s.StatsHeld, s.StatsHead
	d.statsMu.Lock()
	d.stats = s.Stats
	d.statsMu.Unlock()
	return nil
}
