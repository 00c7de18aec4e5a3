package devmgr

import (
	"fmt"

	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// A device's saved state is its transport's and its own, the latter made
// and encoded by the device's package under its kind (virtio.RegisterState),
// as Firecracker's device_manager/persist.rs composes the devices' own
// persist.rs: nothing here knows the kinds there are, but for reading the
// encoding of StateV3.

// State is one virtio-pci function's saved state: its device's ID, its
// transport's state and its device's, whichever kind it is (nil: none, as
// in a state made only to size an encoding buffer).
type State struct {
	ID        string // empty in the older encoding (DecodeV3), which had none
	Transport pcitransport.State
	Device    virtio.DeviceState
}

// MinStateBytes is the least an encoded State takes.
const MinStateBytes = pcitransport.MinStateBytes

// maxKind bounds a decoded kind name or ID.
const maxKind = 256

// Save captures d's state; the machine must be paused.
func Save(d *Device) (State, error) {
	sd, ok := d.Dev.(virtio.Stateful)
	if !ok {
		return State{}, fmt.Errorf("devmgr: cannot save device %s (%T)", d.ID, d.Dev)
	}
	return State{ID: d.ID, Transport: d.Transport.SaveState(), Device: sd.SaveDeviceState()}, nil
}

// Restore loads s into d, a device built and never activated: s must be
// d's (its ID, unless the encoding had none), the device's state goes
// first (it checks s is its kind's and fits it), then the transport's,
// which may activate the device.
func Restore(d *Device, s *State) error {
	sd, ok := d.Dev.(virtio.Stateful)
	if !ok {
		return fmt.Errorf("devmgr: cannot restore device %s (%T)", d.ID, d.Dev)
	}
	if s.ID != "" && s.ID != d.ID {
		return fmt.Errorf("devmgr: the saved state is device %s's, not %s's: the machine must have the devices of the saved one", s.ID, d.ID)
	}
	if err := sd.RestoreDeviceState(s.Device); err != nil {
		return err
	}
	return d.Transport.RestoreState(s.Transport)
}

// Encode appends s's encoding: the ID, the transport's, the device's kind
// (empty for none) and the device's.
func Encode(e *snapshot.Encoder, s *State) {
	e.String(s.ID)
	s.Transport.Encode(e)
	if s.Device == nil {
		e.String("")
		return
	}
	e.String(s.Device.StateKind())
	s.Device.EncodeState(e)
}

// Decode reads what Encode wrote into the zero state s; a kind no device
// package registered fails with snapshot.ErrStateFormat.
func Decode(d *snapshot.Decoder, s *State) error {
	s.ID = d.String("Virtio.ID", maxKind)
	if err := s.Transport.Decode(d); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	kind := d.String("Virtio.Kind", maxKind)
	if err := d.Err(); err != nil || kind == "" {
		return err
	}
	ds, err := virtio.DecodeState(kind, d)
	if err != nil {
		return err
	}
	s.Device = ds
	return d.Err()
}

// StateV3Kinds are the device kinds of the older encoding (the VMM's
// machine state version 3), in the order of its flags: the StateKind of
// packages blk, rng, netdev, vsock and balloon, which must be linked to
// decode it.
var StateV3Kinds = [...]string{"blk", "rng", "net", "vsock", "balloon"}

// EncodeV3 appends s in the older encoding, which had no ID and a
// presence flag per kind in StateV3Kinds, each followed by the state if set. A V3 state
// only comes from DecodeV3, so its device is of one of those kinds; what
// DecodeV3 read re-encodes identically.
func EncodeV3(e *snapshot.Encoder, s *State) {
	s.Transport.Encode(e)
	for _, k := range StateV3Kinds {
		set := s.Device != nil && s.Device.StateKind() == k
		e.Bool(set)
		if set {
			s.Device.EncodeState(e)
		}
	}
}

// DecodeV3 reads what EncodeV3 wrote: at most one flag is set (none for a
// function with no device).
func DecodeV3(d *snapshot.Decoder, s *State) error {
	if err := s.Transport.Decode(d); err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	for _, k := range StateV3Kinds {
		if !d.Bool() {
			continue
		}
		if s.Device != nil {
			return fmt.Errorf("%w: states of a %s and a %s in one function", snapshot.ErrCorrupt, s.Device.StateKind(), k)
		}
		ds, err := virtio.DecodeState(k, d)
		if err != nil {
			return err
		}
		s.Device = ds
	}
	return d.Err()
}
