package rng

import (
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
)

// StateKind is the name rng's State is registered under (virtio.RegisterState).
const StateKind = "rng"

func init() { virtio.RegisterState(StateKind, func() virtio.DeviceState { return new(State) }) }

// StateKind implements virtio.DeviceState.
func (s *State) StateKind() string { return StateKind }

// EncodeState implements virtio.DeviceState: the state has no fields.
func (s *State) EncodeState(*snapshot.Encoder) {}

// DecodeState implements virtio.DeviceState.
func (s *State) DecodeState(d *snapshot.Decoder) error { return d.Err() }

// SaveDeviceState implements virtio.Stateful.
func (d *Device) SaveDeviceState() virtio.DeviceState {
	s := d.SaveState()
	return &s
}

// RestoreDeviceState implements virtio.Stateful.
func (d *Device) RestoreDeviceState(s virtio.DeviceState) error {
	return virtio.RestoreAs(s, "an rng", d.RestoreState)
}
