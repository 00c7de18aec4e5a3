package cmosrtc

import (
	"time"

	"github.com/govisor/govisor/internal/snapshot"
)

// Encode appends the state's binary encoding (snapshot.Encoder).
func (s *State) Encode(e *snapshot.Encoder) {
	e.U8(s.Index)
	e.Raw(s.RAM[:])
	e.I64(int64(s.Offset))
}

// Decode reads what Encode wrote.
func (s *State) Decode(d *snapshot.Decoder) error {
	s.Index = d.U8()
	d.Raw(s.RAM[:])
	s.Offset = time.Duration(d.I64())
	return d.Err()
}
