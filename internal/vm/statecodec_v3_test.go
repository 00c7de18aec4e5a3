package vm

import (
	"bytes"
	_ "embed"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// v3State is a machine state in StateVersion 3, as govisor encoded it
// before the device states moved into their packages (made by main at
// 8fa95c5 with EncodeState from a state filled as filledState does, each
// virtio function holding one device kind: blk, rng, net, vsock, balloon,
// none; every hot-plugged disk a blk). Embedded: the lab runs the test
// binary without the source tree.
//
//go:embed testdata/machine-state-v3.bin
var v3State []byte

// TestStateV3Decodes checks that states saved by govisors before version
// 4 still decode, to the device states they held, and so restore.
func TestStateV3Decodes(t *testing.T) {
	p := v3State
	st, err := DecodeState(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != stateVersionV3 || !readableStateVersion(st.Version) {
		t.Fatalf("version %d, want %d (readable)", st.Version, stateVersionV3)
	}
	// Every byte went where the old codec took it from: the state
	// re-encodes (in version 3) to the very same bytes.
	if !bytes.Equal(EncodeState(st), p) {
		t.Fatal("the version 3 state re-encodes differently")
	}
	kinds := []string{blk.StateKind, rng.StateKind, netdev.StateKind, vsock.StateKind, balloon.StateKind, ""}
	if len(st.Virtio) != len(kinds) {
		t.Fatalf("%d virtio functions, want %d", len(st.Virtio), len(kinds))
	}
	for i, k := range kinds {
		got := ""
		if st.Virtio[i].Device != nil {
			got = st.Virtio[i].Device.StateKind()
		}
		if got != k {
			t.Errorf("function %d holds a %q state, want %q", i, got, k)
		}
	}
	// Values the old codec was given (printed when the file was made).
	if b := st.Virtio[0].Device.(*blk.State); b.Capacity != 5636 || !b.ReadOnly || b.Serial[0] != 7 || b.Serial[19] != 26 {
		t.Errorf("blk state %+v", *b)
	}
	if n := st.Virtio[2].Device.(*netdev.State); n.MAC != [6]byte{4, 5, 6, 7, 8, 9} || n.MTU != 7178 || n.Features != 7179 || n.Pairs != 6 || n.Active != 7 {
		t.Errorf("net state %+v", *n)
	}
	if v := st.Virtio[3].Device.(*vsock.State); v.CID != 7940 || v.NextPort != 7941 || len(v.Conns) != 2 || v.Conns[1].File != 2 ||
		len(v.Pending) != 2 || v.Pending[1].Conn != 6 || string(v.Pending[0].Data) != "\x33\x34" {
		t.Errorf("vsock state %+v", *v)
	}
	if b := st.Virtio[4].Device.(*balloon.State); b.Target != 8755 || b.StatsHead != 8758 || b.Stats.HugetlbFailures != 8769 || b.Stats.Updated.IsZero() {
		t.Errorf("balloon state %+v", *b)
	}
	if tr := st.Virtio[0].Transport; len(tr.Queues) != 2 || tr.MSIX.ConfigVector != 5316 {
		t.Errorf("transport state %+v", tr)
	}
	if len(st.Hotplug.Disks) == 0 {
		t.Fatal("no hot-plugged disks")
	}
	if b, ok := st.Hotplug.Disks[0].Virtio.Device.(*blk.State); !ok || b.Capacity != 9722 {
		t.Errorf("hot-plugged disk state %+v", st.Hotplug.Disks[0].Virtio.Device)
	}

	// In version 4 the same state round-trips too.
	st.Version = StateVersion
	v4 := EncodeState(st)
	back, err := DecodeState(v4)
	if err != nil || !reflect.DeepEqual(back, st) {
		t.Fatalf("version 4 round trip: %v", err)
	}

	// A snapshot whose machine section is version 3 is read.
	ms := filledState()
	s := snapshot.NewState()
	s.AddSection(sectionConfig, configVersion, EncodeConfig(&ms.Config))
	s.AddSection(sectionMachine, stateVersionV3, p)
	snap, err := snapshot.Parse(s.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := readSnapshotState("/snap", snap); err != nil || got.Version != stateVersionV3 || len(got.Virtio) != len(kinds) {
		t.Fatalf("version 3 snapshot: %v", err)
	}
}

// TestStateV3RefusesTwoKinds checks that a version 3 function claiming two
// device states is refused (the old codec never wrote one).
func TestStateV3RefusesTwoKinds(t *testing.T) {
	e := snapshot.NewEncoder(nil)
	var tr VirtioState
	tr.Transport.Encode(e)
	e.Bool(true) // blk
	(&blk.State{}).EncodeState(e)
	e.Bool(true) // rng
	for range 3 {
		e.Bool(false)
	}
	var v VirtioState
	if err := decodeVirtio(snapshot.NewDecoder(e.Bytes()), &v, stateVersionV3); err == nil {
		t.Fatal("decoded a function with two device states")
	}
}

// TestStateV3RestoresRealMachine saves a running guest with a disk, an
// rng and a balloon, encodes its state as a govisor before version 4 did,
// and restores the machine from that: it runs on.
func TestStateV3RestoresRealMachine(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	img, err := diskimage.Create(disk, "raw", 1<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	kvmtest.Require(t)
	cfg := Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}}
	cfg.Disks = []Disk{{Path: disk}}
	cfg.RNG, cfg.Balloon = true, true
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounter(t, m, 1000)
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	st, err := m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	mem := copyMemory(t, m.Memory())
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	m.Close()
	st.Version = stateVersionV3
	old, err := DecodeState(EncodeState(st))
	if err != nil {
		t.Fatal(err)
	}
	if old.Version != stateVersionV3 || len(old.Virtio) != 3 || old.Virtio[0].Device.StateKind() != blk.StateKind {
		t.Fatalf("decoded version %d with %d functions", old.Version, len(old.Virtio))
	}
	r, err := Restore(cfg, old, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := counter(r)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { r.Stop(Exit{Reason: ExitHost}); r.Wait() }()
	waitCounter(t, r, saved+1000)
}
