package pci

import "github.com/govisor/govisor/internal/snapshot"

// Encode appends the bus registers' binary encoding (snapshot.Encoder).
func (s *BusState) Encode(e *snapshot.Encoder) {
	e.U32(s.ConfigAddress)
	e.U8(s.ResetControl)
}

// Decode reads what Encode wrote.
func (s *BusState) Decode(d *snapshot.Decoder) error {
	s.ConfigAddress = d.U32()
	s.ResetControl = d.U8()
	return d.Err()
}
