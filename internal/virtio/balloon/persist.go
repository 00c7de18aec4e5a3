package balloon

import (
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
)

// StateKind is the name balloon's State is registered under (virtio.RegisterState).
const StateKind = "balloon"

func init() { virtio.RegisterState(StateKind, func() virtio.DeviceState { return new(State) }) }

// StateKind implements virtio.DeviceState.
func (s *State) StateKind() string { return StateKind }

// statsFields lists the statistics in their encoding order.
func (st *Stats) statsFields() [10]*uint64 {
	return [...]*uint64{&st.SwapIn, &st.SwapOut, &st.MajorFaults, &st.MinorFaults, &st.FreeMemory,
		&st.TotalMemory, &st.AvailableMemory, &st.DiskCaches, &st.HugetlbAllocations, &st.HugetlbFailures}
}

// EncodeState implements virtio.DeviceState.
func (s *State) EncodeState(e *snapshot.Encoder) {
	e.U64(s.Features)
	e.U32(s.Target)
	e.U32(s.Actual)
	e.Bool(s.StatsHeld)
	e.U16(s.StatsHead)
	for _, p := range s.Stats.statsFields() {
		e.U64(*p)
	}
	e.Time(s.Stats.Updated)
}

// DecodeState implements virtio.DeviceState.
func (s *State) DecodeState(d *snapshot.Decoder) error {
	s.Features = d.U64()
	s.Target = d.U32()
	s.Actual = d.U32()
	s.StatsHeld = d.Bool()
	s.StatsHead = d.U16()
	for _, p := range s.Stats.statsFields() {
		*p = d.U64()
	}
	s.Stats.Updated = d.Time()
	return d.Err()
}

// SaveDeviceState implements virtio.Stateful.
func (d *Device) SaveDeviceState() virtio.DeviceState {
	s := d.SaveState()
	return &s
}

// RestoreDeviceState implements virtio.Stateful.
func (d *Device) RestoreDeviceState(s virtio.DeviceState) error {
	return virtio.RestoreAs(s, "a balloon", d.RestoreState)
}
