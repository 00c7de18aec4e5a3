package devmgr_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/devmgr"
	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/snapshot"
	"github.com/govisor/govisor/internal/virtio"
	_ "github.com/govisor/govisor/internal/virtio/balloon" // a StateV3Kinds kind
	"github.com/govisor/govisor/internal/virtio/blk"
	_ "github.com/govisor/govisor/internal/virtio/netdev" // a StateV3Kinds kind
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
	_ "github.com/govisor/govisor/internal/virtio/vsock" // a StateV3Kinds kind
)

const barBase = 0xC000_0000

type rig struct {
	bus    *pci.Bus
	plat   *pcitest.Platform
	m      *devmgr.Manager
	closed []string // the IDs whose closers ran, in order
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{bus: pci.NewBus(func() {}), plat: pcitest.NewPlatform()}
	r.m = devmgr.New(r.bus, virtqueuetest.NewMemory(0, 1<<20), r.plat, barBase)
	t.Cleanup(r.m.Close)
	return r
}

// closer returns a closer that records id.
func (r *rig) closer(id string) func() error {
	return func() error {
		r.closed = append(r.closed, id)
		return nil
	}
}

func (r *rig) cfg16(slot int, off uint16) uint16 {
	var b [2]byte
	r.bus.ConfigRead(slot, 0, off, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

func (r *rig) cfg32(slot int, off uint16) uint32 {
	var b [4]byte
	r.bus.ConfigRead(slot, 0, off, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// TestAddPlacesBootDevices checks boot devices land in consecutive slots
// from pci.FirstSlot, with their BARs assigned, aligned and apart in the
// window, memory decoding on and the BAR mapped, and IDs unique.
func TestAddPlacesBootDevices(t *testing.T) {
	r := newRig(t)
	var devs []*devmgr.Device
	for _, id := range []string{"rng0", "rng1"} {
		d, err := r.m.Add(id, rng.New(), r.closer(id))
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	barReg := uint16(pci.RegBAR0 + 4*pcitransport.BARIndex)
	for i, d := range devs {
		slot := pci.FirstSlot + i
		if d.Slot != slot || d.Hotplugged || r.m.Get(d.ID) != d {
			t.Errorf("device %s: slot %d hotplugged %v, want slot %d", d.ID, d.Slot, d.Hotplugged, slot)
		}
		if v := r.cfg16(slot, pci.RegVendorID); v != 0x1AF4 {
			t.Errorf("slot %d vendor %#x, want virtio's 0x1af4", slot, v)
		}
		bar := uint64(r.cfg32(slot, barReg)&^0xF) | uint64(r.cfg32(slot, barReg+4))<<32
		if want := uint64(barBase) + uint64(i)*pcitransport.BARSize; bar != want {
			t.Errorf("slot %d BAR %#x, want %#x", slot, bar, want)
		}
		if r.cfg16(slot, pci.RegCommand)&pci.CommandMemory == 0 {
			t.Errorf("slot %d: memory decoding off", slot)
		}
		if !r.plat.Bus.Read(bar, make([]byte, 1)) {
			t.Errorf("slot %d: BAR %#x not mapped", slot, bar)
		}
	}
	if got := r.m.Devices(); !slices.Equal(got, devs) {
		t.Errorf("Devices %v, want %v", got, devs)
	}
	// A duplicate ID is refused, and the backends given are closed.
	if _, err := r.m.Add("rng0", rng.New(), r.closer("dup")); !errors.Is(err, devmgr.ErrDuplicateID) {
		t.Errorf("duplicate ID: %v", err)
	}
	if !slices.Equal(r.closed, []string{"dup"}) {
		t.Errorf("closed %v after a failed Add, want [dup]", r.closed)
	}
}

// TestHotplug checks the slots left free are reserved, read as empty until
// a device is plugged in, and are empty again once it is unplugged.
func TestHotplug(t *testing.T) {
	r := newRig(t)
	if _, err := r.m.Add("rng", rng.New(), r.closer("rng")); err != nil {
		t.Fatal(err)
	}
	mask, err := r.m.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	want := uint32(1<<pci.NumSlots-1) &^ (1<<(pci.FirstSlot+1) - 1) // all but 0 and the rng's
	if mask != want {
		t.Fatalf("hot slots %#x, want %#x", mask, want)
	}
	slot := r.m.FreeSlot()
	if slot != pci.FirstSlot+1 || !r.m.IsHotSlot(slot) || r.m.IsHotSlot(pci.FirstSlot) {
		t.Fatalf("free slot %d", slot)
	}
	if v := r.cfg16(slot, pci.RegVendorID); v != 0xFFFF {
		t.Fatalf("empty slot reads vendor %#x, want 0xffff", v)
	}
	if _, err := r.m.Plug(pci.FirstSlot, "x", rng.New()); !errors.Is(err, devmgr.ErrSlotNotFree) {
		t.Errorf("plug into a boot device's slot: %v", err)
	}
	if _, err := r.m.Plug(slot, "rng", rng.New()); !errors.Is(err, devmgr.ErrDuplicateID) {
		t.Errorf("plug under a used ID: %v", err)
	}
	d, err := r.m.Plug(slot, "hot", rng.New(), r.closer("hot"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Hotplugged || d.Slot != slot || r.m.Get("hot") != d || r.m.FreeSlot() != slot+1 {
		t.Fatalf("plugged %+v; free slot %d", d, r.m.FreeSlot())
	}
	if v := r.cfg16(slot, pci.RegVendorID); v != 0x1AF4 {
		t.Fatalf("plugged slot reads vendor %#x", v)
	}
	if _, err := r.m.Plug(slot, "again", rng.New()); !errors.Is(err, devmgr.ErrSlotNotFree) {
		t.Errorf("plug into a full slot: %v", err)
	}
	r.m.Quiesce() // reaches the hot device too, and returns
	r.m.Unquiesce()
	if got := r.m.Unplug(slot); got != d || r.m.Get("hot") != nil || r.m.Unplug(slot) != nil {
		t.Fatalf("unplug returned %v", got)
	}
	if v := r.cfg16(slot, pci.RegVendorID); v != 0xFFFF || len(r.closed) != 0 {
		t.Fatalf("unplugged slot reads vendor %#x; closed %v", v, r.closed)
	}
	if err := d.Close(); err != nil || !slices.Equal(r.closed, []string{"hot"}) {
		t.Fatalf("close: %v, closed %v", err, r.closed)
	}
	// Close closes the hot-plugged devices, then the boot ones, once.
	if _, err := r.m.Plug(slot, "hot2", rng.New(), r.closer("hot2")); err != nil {
		t.Fatal(err)
	}
	r.m.Close()
	r.m.Close()
	if want := []string{"hot", "hot2", "rng"}; !slices.Equal(r.closed, want) {
		t.Fatalf("closed %v, want %v", r.closed, want)
	}
}

// TestSaveRestore checks a device's state is saved with its kind and
// restored only into a device of that kind.
func TestSaveRestore(t *testing.T) {
	r := newRig(t)
	d, err := r.m.Add("rng", rng.New())
	if err != nil {
		t.Fatal(err)
	}
	st, err := devmgr.Save(d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Device == nil || st.Device.StateKind() != rng.StateKind || len(st.Transport.Queues) != 1 {
		t.Fatalf("saved %+v", st)
	}
	if st.ID != "rng" {
		t.Errorf("saved ID %q", st.ID)
	}
	if err := devmgr.Restore(d, &st); err != nil {
		t.Fatal(err)
	}
	// Another device's state is refused by its ID; one without an ID (the
	// older encoding) is taken.
	moved := st
	moved.ID = "rng1"
	if err := devmgr.Restore(d, &moved); err == nil || !strings.Contains(err.Error(), "rng1") {
		t.Errorf("restore rng1's state into rng: %v", err)
	}
	moved.ID = ""
	if err := devmgr.Restore(d, &moved); err != nil {
		t.Errorf("restore a state without ID: %v", err)
	}
	other := st
	other.Device = &blk.State{}
	if err := devmgr.Restore(d, &other); err == nil || !strings.Contains(err.Error(), "not an rng") {
		t.Errorf("restore a disk's state into an rng: %v", err)
	}
}

// TestCodec round-trips states in both encodings and checks the older
// one's kinds are all registered.
func TestCodec(t *testing.T) {
	for _, k := range devmgr.StateV3Kinds {
		if virtio.NewState(k) == nil {
			t.Errorf("version 3 kind %q is not registered", k)
		}
	}
	states := []devmgr.State{
		{Device: &blk.State{Capacity: 9, ReadOnly: true, Serial: [20]byte{'v', 'd', 'a'}}},
		{Device: &rng.State{}},
		{}, // no device
	}
	states[0].Transport.Status = 15
	states[0].Transport.MSIX.Table = []byte{1, 2, 3}
	for _, c := range []struct {
		name   string
		encode func(*snapshot.Encoder, *devmgr.State)
		decode func(*snapshot.Decoder, *devmgr.State) error
		ids    bool
	}{
		{"by kind", devmgr.Encode, devmgr.Decode, true},
		{"version 3", devmgr.EncodeV3, devmgr.DecodeV3, false}, // no IDs
	} {
		for i := range states {
			want := states[i]
			if c.ids {
				want.ID = fmt.Sprintf("dev%d", i)
			}
			e := snapshot.NewEncoder(nil)
			c.encode(e, &want)
			var got devmgr.State
			d := snapshot.NewDecoder(e.Bytes())
			if err := c.decode(d, &got); err != nil || d.Finish() != nil {
				t.Fatalf("%s, state %d: %v, %v", c.name, i, err, d.Finish())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s, state %d: got %+v, want %+v", c.name, i, got, want)
			}
			if len(e.Bytes()) < devmgr.MinStateBytes {
				t.Errorf("%s, state %d: %d bytes, less than MinStateBytes", c.name, i, len(e.Bytes()))
			}
		}
	}
	// A kind no package registered is another govisor's format.
	e := snapshot.NewEncoder(nil)
	e.String("gpu0")
	var tr pcitransport.State
	tr.Encode(e)
	e.String("gpu")
	var got devmgr.State
	if err := devmgr.Decode(snapshot.NewDecoder(e.Bytes()), &got); !errors.Is(err, snapshot.ErrStateFormat) {
		t.Errorf("unknown kind: %v, want ErrStateFormat", err)
	}
}

// FuzzDecode feeds arbitrary bytes to both state decoders: they fail
// cleanly, or what they read re-encodes identically.
func FuzzDecode(f *testing.F) {
	for _, s := range []devmgr.State{{Device: &blk.State{Capacity: 3}}, {Device: &rng.State{}}, {}} {
		e := snapshot.NewEncoder(nil)
		devmgr.Encode(e, &s)
		f.Add(e.Bytes())
		e = snapshot.NewEncoder(nil)
		devmgr.EncodeV3(e, &s)
		f.Add(e.Bytes())
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, c := range []struct {
			encode func(*snapshot.Encoder, *devmgr.State)
			decode func(*snapshot.Decoder, *devmgr.State) error
		}{{devmgr.Encode, devmgr.Decode}, {devmgr.EncodeV3, devmgr.DecodeV3}} {
			var s devmgr.State
			d := snapshot.NewDecoder(p)
			if c.decode(d, &s) != nil || d.Finish() != nil {
				continue
			}
			e := snapshot.NewEncoder(nil)
			c.encode(e, &s)
			if string(e.Bytes()) != string(p) {
				t.Fatal("state re-encodes differently")
			}
		}
	})
}
