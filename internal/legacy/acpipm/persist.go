package acpipm

import "github.com/govisor/govisor/internal/snapshot"

// Encode appends the state's binary encoding (snapshot.Encoder).
func (s *State) Encode(e *snapshot.Encoder) {
	e.U16(s.Status)
	e.U16(s.Enable)
	e.U16(s.Control)
	e.U32(s.Timer)
}

// Decode reads what Encode wrote.
func (s *State) Decode(d *snapshot.Decoder) error {
	s.Status = d.U16()
	s.Enable = d.U16()
	s.Control = d.U16()
	s.Timer = d.U32()
	return d.Err()
}
