package vm

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/vsock"
)

// fill sets every exported field reachable from v to a value derived from
// *n (a counter, so that no two fields are alike), with slices of two
// elements and pointers allocated: a state in which every field matters.
func fill(v reflect.Value, n *uint64) {
	*n++
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(*n % (1 << (8*v.Type().Size() - 1)))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n % 8)) // counts and indices stay small
	case reflect.String:
		v.SetString(strings.Repeat("s", int(*n%7)+1))
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i), n)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), n)
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(1700000000+int64(*n), int64(*n)).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

// filledState returns a migration state with every field set.
func filledState() *migrationState {
	var ms migrationState
	var n uint64
	fill(reflect.ValueOf(&ms).Elem(), &n)
	ms.Machine.Version = StateVersion
	// One function per registered device kind, and a hot-plugged disk's
	// (fill leaves the interface nil): every kind's codec is covered.
	tr := ms.Machine.Virtio[0].Transport
	ms.Machine.Virtio = nil
	for _, k := range virtio.StateKinds() {
		s := virtio.NewState(k)
		fill(reflect.ValueOf(s).Elem(), &n)
		ms.Machine.Virtio = append(ms.Machine.Virtio, VirtioState{Transport: tr, Device: s})
	}
	for i := range ms.Machine.Hotplug.Disks {
		s := virtio.NewState(blk.StateKind)
		fill(reflect.ValueOf(s).Elem(), &n)
		ms.Machine.Hotplug.Disks[i].Virtio.Device = s
	}
	for i := range ms.Machine.IRQChips {
		ms.Machine.IRQChips[i].ChipID = uint32(i)
	}
	for i := range ms.Machine.VCPUs {
		if x := ms.Machine.VCPUs[i].XCRs; x != nil {
			x.NrXCRs = 1
		}
	}
	return &ms
}

// TestStateCodecCoversEveryField round-trips states in which every field
// is set: a field added to any state type but not to the codec fails here.
func TestStateCodecCoversEveryField(t *testing.T) {
	ms := filledState()
	var got migrationState
	if err := decodeMigrationState(encodeMigrationState(nil, ms), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, ms) {
		t.Fatalf("migration state round trip differs:\n got %+v\nwant %+v", got, *ms)
	}
	st, err := DecodeState(EncodeState(&ms.Machine))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, &ms.Machine) {
		t.Fatal("machine state round trip differs")
	}
	sc, err := DecodeConfig(EncodeConfig(&ms.Config))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sc, &ms.Config) {
		t.Fatalf("config round trip: got %+v, want %+v", sc, ms.Config)
	}
	// Zero values (nil pointers and slices, zero times) survive too.
	var zero migrationState
	var gotZero migrationState
	if err := decodeMigrationState(encodeMigrationState(nil, &zero), &gotZero); err != nil || !reflect.DeepEqual(gotZero, zero) {
		t.Fatalf("zero state round trip: %v, %+v", err, gotZero)
	}
}

// TestStateCodecRealMachine saves a running guest with a disk, an rng, a
// balloon and a vsock device, round-trips its state and restores it.
func TestStateCodecRealMachine(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	img, err := diskimage.Create(disk, "raw", 1<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
	kvmtest.Require(t)
	cfg := Config{CPUs: 2, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}}
	cfg.Disks = []Disk{{Path: disk, Serial: "codec"}}
	cfg.RNG, cfg.Balloon = true, true
	cfg.Vsock = &Vsock{CID: 7, UDS: filepath.Join(dir, "v.sock")}
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
	sc := m.savedConfig()
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	m.Close() // frees the vsock socket for the restored machine
	if len(st.Virtio) != 4 || len(st.VCPUs) != 2 || len(st.VCPUs[0].MSRs) == 0 {
		t.Fatalf("saved %d virtio devices, %d vCPUs, %d MSRs", len(st.Virtio), len(st.VCPUs), len(st.VCPUs[0].MSRs))
	}
	enc := EncodeState(st)
	got, err := DecodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatal("the decoded state differs from the saved one")
	}
	ms := migrationState{Config: sc, Machine: *st}
	var back migrationState
	if err := decodeMigrationState(encodeMigrationState(nil, &ms), &back); err != nil || !reflect.DeepEqual(back, ms) {
		t.Fatalf("migration state round trip: %v", err)
	}
	// Every proper prefix is refused, naming what is missing.
	for _, n := range []int{0, 1, 100, len(enc) / 2, len(enc) - 1} {
		if _, err := DecodeState(enc[:n]); !errors.Is(err, snapshot.ErrCorrupt) {
			t.Errorf("%d of %d bytes: %v, want ErrCorrupt", n, len(enc), err)
		}
	}
	r, err := Restore(cfg, got, mem)
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

// TestOldStateRefused checks that states in the gob encoding of earlier
// govisors are refused with a message that says what to do.
func TestOldStateRefused(t *testing.T) {
	var old bytes.Buffer
	// gob stands for the encoding of earlier govisors, whose device states
	// were concrete fields: the interfaces are left out.
	gobState := filledState()
	for i := range gobState.Machine.Virtio {
		gobState.Machine.Virtio[i].Device = nil
	}
	for i := range gobState.Machine.Hotplug.Disks {
		gobState.Machine.Hotplug.Disks[i].Virtio.Device = nil
	}
	if err := gob.NewEncoder(&old).Encode(gobState); err != nil {
		t.Fatal(err)
	}
	var ms migrationState
	err := decodeMigrationState(old.Bytes(), &ms)
	if !errors.Is(err, ErrStateFormat) || !strings.Contains(err.Error(), "same govisor version") {
		t.Errorf("gob migration state: %v, want ErrStateFormat", err)
	}
	newer := encodeMigrationState(nil, filledState())
	newer[len(migrationMagic)] = migrationStateVersion + 1
	if err := decodeMigrationState(newer, &ms); !errors.Is(err, ErrStateFormat) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", migrationStateVersion+1)) {
		t.Errorf("newer migration state: %v, want ErrStateFormat naming version %d", err, migrationStateVersion+1)
	}

	// A snapshot whose sections are version 1 (gob).
	s := snapshot.NewState()
	s.AddSection(sectionConfig, 1, old.Bytes())
	s.AddSection(sectionMachine, 1, old.Bytes())
	snap, err := snapshot.Parse(s.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = readSnapshotState("/snap", snap)
	if !errors.Is(err, ErrStateFormat) || !strings.Contains(err.Error(), "config version 1") ||
		!strings.Contains(err.Error(), "new snapshot") {
		t.Errorf("version 1 snapshot: %v, want ErrStateFormat naming version 1", err)
	}
}

// FuzzDecodeState feeds arbitrary bytes to the state decoders: they must
// fail cleanly, never panic, and what decodes must re-encode identically.
func FuzzDecodeState(f *testing.F) {
	ms := filledState()
	full := EncodeState(&ms.Machine)
	f.Add(full)
	f.Add(full[:len(full)/3])
	f.Add(EncodeState(&MachineState{Version: StateVersion}))
	f.Add(encodeMigrationState(nil, ms))
	f.Add(EncodeConfig(&ms.Config))
	f.Add([]byte{})
	f.Add(EncodeState(&MachineState{Version: StateVersion, Virtio: []VirtioState{{Device: &vsock.State{CID: 42, NextPort: 9,
		Conns:   []vsock.ConnState{{HostPort: 5000, GuestPort: 1025, ToHost: []byte("abc"), File: 1}},
		Pending: []vsock.Packet{{Conn: -1, HostPort: 9, GuestPort: 10, Op: vsock.OpRST}}}}}}))
	f.Add(v3State)
	f.Fuzz(func(t *testing.T, p []byte) {
		if st, err := DecodeState(p); err == nil {
			if !bytes.Equal(EncodeState(st), p) {
				t.Fatal("machine state re-encodes differently")
			}
		}
		var m migrationState
		if err := decodeMigrationState(p, &m); err == nil {
			if !bytes.Equal(encodeMigrationState(nil, &m), p) {
				t.Fatal("migration state re-encodes differently")
			}
		}
		if c, err := DecodeConfig(p); err == nil {
			if !bytes.Equal(EncodeConfig(c), p) {
				t.Fatal("config re-encodes differently")
			}
		}
	})
}

// TestCommitRefusesInconsistentState hands a prebuilt destination states
// that decode but do not fit it: each is refused, none panics.
func TestCommitRefusesInconsistentState(t *testing.T) {
	kvmtest.Require(t)
	m, err := build(Config{CPUs: 2, MemoryMiB: 64, DebugExit: true}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &migrationDest{m: m, mem: m.mem, prebuilt: true}
	defer d.discard()
	src := newFlat(t, 2, countingGuest(), nil)
	good, err := src.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*migrationState)
	}{
		{"fewer vCPUs than the config", func(ms *migrationState) { ms.Machine.VCPUs = ms.Machine.VCPUs[:1] }},
		{"more vCPUs", func(ms *migrationState) { ms.Machine.VCPUs = append(ms.Machine.VCPUs, ms.Machine.VCPUs[0]) }},
		{"no interrupt controllers", func(ms *migrationState) { ms.Machine.IRQChips = nil }},
		{"other devices", func(ms *migrationState) { ms.Config.RNG = true }},
		{"virtio state without devices", func(ms *migrationState) { ms.Machine.Virtio = []VirtioState{{}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := migrationState{Config: src.savedConfig(), Machine: *good}
			ms.Machine.VCPUs = append([]VCPUState(nil), good.VCPUs...)
			tc.mutate(&ms)
			if err := d.Commit(encodeMigrationState(nil, &ms)); err == nil {
				t.Fatal("committed")
			}
		})
	}
}
