package virtio_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/rng"
)

// TestStateRegistry checks the device state kinds: registered kinds decode
// what they encode, an unknown kind is another govisor's format, and a
// kind registered twice is refused.
func TestStateRegistry(t *testing.T) {
	if k := virtio.StateKinds(); len(k) < 2 || virtio.NewState(blk.StateKind) == nil || virtio.NewState("nope") != nil {
		t.Fatalf("kinds %v", k)
	}
	in := &blk.State{Capacity: 8, ReadOnly: true, Serial: [20]byte{'s'}}
	e := snapshot.NewEncoder(nil)
	in.EncodeState(e)
	got, err := virtio.DecodeState(blk.StateKind, snapshot.NewDecoder(e.Bytes()))
	if err != nil || *got.(*blk.State) != *in {
		t.Fatalf("round trip: %v, %+v", err, got)
	}
	if _, err := virtio.DecodeState(blk.StateKind, snapshot.NewDecoder(e.Bytes()[:5])); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("truncated: %v, want ErrCorrupt", err)
	}
	if _, err := virtio.DecodeState("gpu", snapshot.NewDecoder(nil)); !errors.Is(err, snapshot.ErrStateFormat) || !strings.Contains(err.Error(), "gpu") {
		t.Errorf("unknown kind: %v, want ErrStateFormat naming it", err)
	}
	if err := virtio.StateMismatch(&rng.State{}, "a disk"); !strings.Contains(err.Error(), "not a disk") || !strings.Contains(err.Error(), "rng") {
		t.Errorf("mismatch: %v", err)
	}
	// RestoreAs: a disk's state reaches the disk's restore; an rng's is refused.
	var restored blk.State
	if err := virtio.RestoreAs(in, "a disk", func(s blk.State) error { restored = s; return nil }); err != nil || restored != *in {
		t.Errorf("RestoreAs with a disk's state: %v, %+v", err, restored)
	}
	if err := virtio.RestoreAs(&rng.State{}, "a disk", func(blk.State) error { t.Error("restored an rng's state into a disk"); return nil }); err == nil || !strings.Contains(err.Error(), "not a disk") {
		t.Errorf("RestoreAs with an rng's state: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a kind registered twice was accepted")
			}
		}()
		virtio.RegisterState(blk.StateKind, func() virtio.DeviceState { return new(blk.State) })
	}()
}
