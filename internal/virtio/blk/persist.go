package blk

import (
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
)

// StateKind is the name blk's State is registered under (virtio.RegisterState).
const StateKind = "blk"

func init() { virtio.RegisterState(StateKind, func() virtio.DeviceState { return new(State) }) }

// StateKind implements virtio.DeviceState.
func (s *State) StateKind() string { return StateKind }

// EncodeState implements virtio.DeviceState.
func (s *State) EncodeState(e *snapshot.Encoder) {
	e.U64(s.Capacity)
	e.Bool(s.ReadOnly)
	e.Raw(s.Serial[:])
}

// DecodeState implements virtio.DeviceState.
func (s *State) DecodeState(d *snapshot.Decoder) error {
	s.Capacity = d.U64()
	s.ReadOnly = d.Bool()
	d.Raw(s.Serial[:])
	return d.Err()
}

// SaveDeviceState implements virtio.Stateful.
func (d *Device) SaveDeviceState() virtio.DeviceState {
	s := d.SaveState()
	return &s
}

// RestoreDeviceState implements virtio.Stateful.
func (d *Device) RestoreDeviceState(s virtio.DeviceState) error {
	return virtio.RestoreAs(s, "a disk", d.RestoreState)
}
