package virtio

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/govisor/govisor/internal/snapshot"
)

// Device state for snapshots and live migration, kept by each device kind
// next to its code (as Firecracker's devices/virtio/*/persist.rs): a device
// package registers its state type under a kind name, and the VMM saves,
// encodes, decodes and restores any device through these interfaces
// without knowing the kinds there are.

// DeviceState is one device's saved state.
type DeviceState interface {
	// StateKind is the name the state's kind is registered under.
	StateKind() string
	// EncodeState appends the state's binary encoding (snapshot.Encoder:
	// fixed field order, no type information).
	EncodeState(e *snapshot.Encoder)
	// DecodeState reads what EncodeState wrote into the (zero) state,
	// checking every count and size against the input left.
	DecodeState(d *snapshot.Decoder) error
}

// Stateful is a device whose state can be saved and restored.
type Stateful interface {
	// SaveDeviceState returns the state of the paused device.
	SaveDeviceState() DeviceState
	// RestoreDeviceState loads s into a device that has not been
	// activated; it fails if s is another kind's or does not fit the
	// device (another disk size, other features).
	RestoreDeviceState(s DeviceState) error
}

var (
	kindsMu sync.RWMutex
	kinds   = map[string]func() DeviceState{}
)

// RegisterState makes the state kind decodable: newState returns a zero
// state of it. Device packages call it from init; a kind registered twice
// is a programming error and panics.
func RegisterState(kind string, newState func() DeviceState) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if kind == "" || kinds[kind] != nil {
		panic(fmt.Sprintf("virtio: state kind %q registered twice or empty", kind))
	}
	kinds[kind] = newState
}

// NewState returns a zero state of the registered kind, or nil if no
// device package registered it.
func NewState(kind string) DeviceState {
	kindsMu.RLock()
	newState := kinds[kind]
	kindsMu.RUnlock()
	if newState == nil {
		return nil
	}
	return newState()
}

// StateKinds lists the registered state kinds, sorted.
func StateKinds() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DecodeState reads a state of the given kind; an unregistered kind fails
// (a newer govisor's device, or a corrupt state).
func DecodeState(kind string, d *snapshot.Decoder) (DeviceState, error) {
	s := NewState(kind)
	if s == nil {
		return nil, fmt.Errorf("%w: device state of unknown kind %q (a newer govisor's device?); this govisor knows %s",
			snapshot.ErrStateFormat, kind, strings.Join(StateKinds(), ", "))
	}
	if err := s.DecodeState(d); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return s, nil
}

// StateMismatch is the error of a RestoreDeviceState handed another
// kind's state (or none): what says which device it expected.
func StateMismatch(s DeviceState, what string) error {
	if s == nil {
		return fmt.Errorf("saved state is not %s (no device state)", what)
	}
	return fmt.Errorf("saved state is not %s (a %s's)", what, s.StateKind())
}

// RestoreAs gives restore the state s when it is a *S (a device kind's own
// state), else fails naming what the device is: the shared body of the
// devices' RestoreDeviceState.
func RestoreAs[S any](s DeviceState, what string, restore func(S) error) error {
	st, ok := any(s).(*S)
	if !ok {
		return StateMismatch(s, what)
	}
	return restore(*st)
}
