package i8042

import "github.com/govisor/govisor/internal/snapshot"

// Encode appends the state's binary encoding (snapshot.Encoder).
func (s *State) Encode(e *snapshot.Encoder) {
	e.Raw(s.RAM[:])
	e.Raw([]byte{s.Status, s.Output, s.OutputPort, s.Pending})
}

// Decode reads what Encode wrote.
func (s *State) Decode(d *snapshot.Decoder) error {
	d.Raw(s.RAM[:])
	for _, p := range [...]*uint8{&s.Status, &s.Output, &s.OutputPort, &s.Pending} {
		*p = d.U8()
	}
	return d.Err()
}
