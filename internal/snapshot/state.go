package snapshot

import (
	"fmt"
)

// State is a set of named sections without guest memory, encoded exactly
// like a state file. A Writer keeps one; live migration can send Bytes as
// its device state and the destination reads it back with Parse.
type State struct {
	buf   []byte // header and sections so far
	count uint32
	names map[string]bool
}

// NewState returns an empty State.
func NewState() *State {
	return &State{buf: appendHeader(nil, FormatVersion), names: map[string]bool{}}
}

// AddSection adds a named section with the caller's version of its encoding.
func (s *State) AddSection(name string, version uint32, payload []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.add(name, version, payload)
}

// add appends a section whose name has been checked (or is reserved).
func (s *State) add(name string, version uint32, payload []byte) error {
	if s.names[name] {
		return fmt.Errorf("%w: %q added twice", ErrBadName, name)
	}
	s.names[name] = true
	s.buf = appendSection(s.buf, name, version, payload)
	s.count++
	return nil
}

// Bytes returns the encoded state: header, sections and trailer.
func (s *State) Bytes() []byte {
	return appendTrailer(append([]byte(nil), s.buf...), s.count)
}

// Parse verifies and decodes an encoded State (or a state file's contents).
// The returned Snapshot has sections only; MapMemory reports ErrNoMemory.
// Its payloads alias data.
func Parse(data []byte) (*Snapshot, error) {
	s, err := parse(data)
	if err != nil {
		return nil, err
	}
	s.hasMem = false
	s.regions = nil
	return s, nil
}
