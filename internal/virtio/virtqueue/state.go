package virtqueue

import "fmt"

// State is a queue's position, for snapshots and live migration. The
// rings themselves live in guest memory and travel with it.
type State struct {
	Config        Config
	LastAvail     uint16
	NextUsed      uint16
	SignalledUsed uint16
	UsedFlags     uint16
	Broken        bool
}

// SaveState returns the queue's state.
func (q *Queue) SaveState() State {
	return State{Config: q.cfg, LastAvail: q.lastAvail, NextUsed: q.nextUsed, SignalledUsed: q.signalledUsed, UsedFlags: q.usedFlags, Broken: q.broken}
}

// Restore recreates a queue from s over mem, validating the configuration
// as New does.
func Restore(mem Memory, s State) (*Queue, error) {
	q, err := New(mem, s.Config)
	if err != nil {
		return nil, fmt.Errorf("virtqueue: restore: %w", err)
	}
	q.lastAvail, q.nextUsed, q.signalledUsed, q.broken = s.LastAvail, s.NextUsed, s.SignalledUsed, s.Broken
	q.usedFlags = s.UsedFlags & UsedFNoNotify
	return q, nil
}
