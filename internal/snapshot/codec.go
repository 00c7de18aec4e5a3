package snapshot

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
)

// Encode encodes v (a struct or pointer to one) with encoding/gob, for use
// as a section payload.
//
// Why gob: it is self-describing by field name, so adding a field to a state
// struct keeps old snapshots readable (the new field decodes as its zero
// value) and removing one makes old data silently ignored. Changes in
// meaning, units or type are not caught by gob: bump the section's version
// and switch on it in the restore code, refusing versions it does not know.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(v); err != nil {
		return nil, fmt.Errorf("snapshot: encode %T: %w", v, err)
	}
	return b.Bytes(), nil
}

// Decode decodes a payload made by Encode into v (a pointer), failing if the
// payload has bytes left over.
func Decode(payload []byte, v any) error {
	r := bytes.NewReader(payload)
	if err := gob.NewDecoder(r).Decode(v); err != nil {
		return fmt.Errorf("snapshot: decode %T: %w", v, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the %T value", ErrCorrupt, r.Len(), v)
	}
	return nil
}

// AddValue encodes v with Encode and adds it as a section.
func (w *Writer) AddValue(name string, version uint32, v any) error {
	if w.done {
		return errors.New("snapshot: AddValue after Commit or Abort")
	}
	return w.state.AddValue(name, version, v)
}

// Value decodes section name into v with Decode and returns its version.
// Callers check the version before trusting v's meaning.
func (s *Snapshot) Value(name string, v any) (version uint32, err error) {
	version, p, err := s.Section(name)
	if err != nil {
		return 0, err
	}
	if err := Decode(p, v); err != nil {
		return version, fmt.Errorf("snapshot: section %q: %w", name, err)
	}
	return version, nil
}
