package netdev

import (
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
)

// StateKind is the name netdev's State is registered under (virtio.RegisterState).
const StateKind = "net"

// maxStatePairs bounds the queue pair counts a decoded state may claim.
const maxStatePairs = 1 << 16

func init() { virtio.RegisterState(StateKind, func() virtio.DeviceState { return new(State) }) }

// StateKind implements virtio.DeviceState.
func (s *State) StateKind() string { return StateKind }

// EncodeState implements virtio.DeviceState.
func (s *State) EncodeState(e *snapshot.Encoder) {
	e.Raw(s.MAC[:])
	e.U16(s.MTU)
	e.U64(s.Features)
	e.Bool(s.LinkUp)
	e.Bool(s.Announce)
	e.Int(s.Pairs)
	e.Int(s.Active)
}

// DecodeState implements virtio.DeviceState.
func (s *State) DecodeState(d *snapshot.Decoder) error {
	d.Raw(s.MAC[:])
	s.MTU = d.U16()
	s.Features = d.U64()
	s.LinkUp = d.Bool()
	s.Announce = d.Bool()
	s.Pairs = d.Int("Net.Pairs", maxStatePairs)
	s.Active = d.Int("Net.Active", maxStatePairs)
	return d.Err()
}

// SaveDeviceState implements virtio.Stateful.
func (d *Device) SaveDeviceState() virtio.DeviceState {
	s := d.SaveState()
	return &s
}

// RestoreDeviceState implements virtio.Stateful.
func (d *Device) RestoreDeviceState(s virtio.DeviceState) error {
	return virtio.RestoreAs(s, "a network interface", d.RestoreState)
}
