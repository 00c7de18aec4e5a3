package pcihotplug

import "github.com/govisor/govisor/internal/snapshot"

// Encode appends the registers' binary encoding (snapshot.Encoder).
func (s *State) Encode(e *snapshot.Encoder) {
	e.U32(s.Up)
	e.U32(s.Down)
	e.U16(s.GPESts)
	e.U16(s.GPEEn)
}

// Decode reads what Encode wrote.
func (s *State) Decode(d *snapshot.Decoder) error {
	s.Up = d.U32()
	s.Down = d.U32()
	s.GPESts = d.U16()
	s.GPEEn = d.U16()
	return d.Err()
}
