package pcitransport_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/pci"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/rng"
	"github.com/govisor/govisor/internal/virtio/virtqueue"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const (
	barAddr = 0xE000_0000
	ramSize = 1 << 20
)

type rig struct {
	tr   *pcitransport.Transport
	plat *pcitest.Platform
	mem  *virtqueuetest.Memory
	drv  *pcitest.Driver
	dev  *rng.Device
}

func newRig(t *testing.T, noDoorbells bool) *rig {
	t.Helper()
	r := &rig{plat: pcitest.NewPlatform(), mem: virtqueuetest.NewMemory(0, ramSize), dev: rng.New()}
	r.plat.NoDoorbells = noDoorbells
	var err error
	if r.tr, err = pcitransport.New(r.dev, r.mem, r.plat); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	if r.drv, err = pcitest.Probe(r.tr, r.plat, r.mem, barAddr); err != nil {
		t.Fatal(err)
	}
	return r
}

const allFeatures = virtio.FeatureVersion1 | virtio.FeatureRingEventIdx | virtio.FeatureRingIndirectDesc

// request sends one rng request of n bytes on queue 0 and returns the
// used length and the buffer.
func (r *rig) request(t *testing.T, n uint32) (uint32, []byte) {
	t.Helper()
	q := r.drv.Queues[0]
	buf, err := q.Alloc(uint64(n))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: n, Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	u, err := r.drv.Wait(0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	r.mem.Read(buf, b)
	return u.Len, b
}

func TestIdentity(t *testing.T) {
	r := newRig(t, false)
	cs := r.tr.Config()
	if cs.U16(pci.RegVendorID) != 0x1AF4 || cs.U16(pci.RegDeviceID) != 0x1040+virtio.IDEntropy {
		t.Fatalf("ids %#x:%#x", cs.U16(pci.RegVendorID), cs.U16(pci.RegDeviceID))
	}
	if cs.U8(pci.RegRevision) != 1 || cs.U16(pci.RegSubsysVendor) != 0x1AF4 {
		t.Fatal("revision or subsystem vendor wrong")
	}
	if size, kind := cs.BARSize(0); size != pcitransport.BARSize || kind != pci.BARMem64 {
		t.Fatalf("BAR0 %#x kind %d", size, kind)
	}
	if got := cs.BARAddress(0); got != barAddr {
		t.Fatalf("BAR0 at %#x", got)
	}
	if r.drv.NotifyMult != 4 {
		t.Fatalf("notify_off_multiplier %d", r.drv.NotifyMult)
	}
	if got := r.drv.Common(0x12, 2); got != 1 {
		t.Fatalf("num_queues %d", got)
	}
	if r.plat.Doorbells() != 1 {
		t.Fatalf("%d doorbells registered", r.plat.Doorbells())
	}
}

func TestRngThroughTransport(t *testing.T) {
	for _, tt := range []struct {
		name        string
		noDoorbells bool
		features    uint64
	}{
		{"doorbell, event idx", false, allFeatures},
		{"MMIO kick, no event idx", true, virtio.FeatureVersion1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.noDoorbells)
			if err := r.drv.Init(tt.features, 1, 0); err != nil {
				t.Fatal(err)
			}
			if r.drv.Features != tt.features {
				t.Fatalf("negotiated %#x", r.drv.Features)
			}
			r.mem.ClearDirty()
			for range 5 {
				n, b := r.request(t, 64)
				if n != 64 || bytes.Equal(b, make([]byte, 64)) {
					t.Fatalf("used len %d, data %x", n, b)
				}
			}
			if r.plat.MSIs(1) == 0 {
				t.Fatal("no queue interrupt")
			}
			if !r.mem.Dirty(r.drv.Queues[0].UsedAddr) {
				t.Fatal("used ring not marked dirty")
			}
			if r.plat.BadMSIs.Load() != 0 {
				t.Fatal("bad MSI")
			}
		})
	}
}

func TestFeatureNegotiation(t *testing.T) {
	tests := []struct {
		name string
		want uint64
		ok   bool
	}{
		{"version 1", virtio.FeatureVersion1, true},
		{"without VERSION_1", virtio.FeatureRingEventIdx, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, false)
			err := r.drv.Init(tt.want, 1, 0)
			if tt.ok != (err == nil) {
				t.Fatalf("Init = %v", err)
			}
		})
	}
	t.Run("feature not offered", func(t *testing.T) {
		r := newRig(t, false)
		r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
		r.drv.SetCommon(0x08, 4, 1)
		r.drv.SetCommon(0x0C, 4, 1|1<<2) // VERSION_1 and ACCESS_PLATFORM... bit 34 (packed)
		r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
		if r.drv.Status()&virtio.StatusFeaturesOK != 0 {
			t.Fatal("FEATURES_OK accepted with a feature the device did not offer")
		}
	})
}

func TestMalformedChainNeedsReset(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	q := r.drv.Queues[0]
	q.WriteDesc(q.DescAddr, 0, ramSize+0x1000, 64, virtqueue.DescFWrite, 0) // outside RAM
	q.Publish(0)
	r.drv.Kick(0)
	if err := r.drv.WaitStatus(virtio.StatusDeviceNeedsReset); err != nil {
		t.Fatal(err)
	}
	if _, ok := q.GetUsed(); ok {
		t.Fatal("malformed chain was used")
	}
	if r.plat.MSIs(0) == 0 {
		t.Fatal("no configuration change interrupt")
	}
	if !errors.Is(r.tr.Err(), virtqueue.ErrBadChain) {
		t.Fatalf("Err = %v", r.tr.Err())
	}
	// The driver resets and starts over.
	q.Reset()
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.request(t, 16); n != 16 {
		t.Fatalf("after reset: used len %d", n)
	}
}

func TestBadQueueConfigNeedsReset(t *testing.T) {
	r := newRig(t, false)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	r.drv.SetCommon(0x08, 4, 1)
	r.drv.SetCommon(0x0C, 4, 1)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	r.drv.SetCommon(0x16, 2, 0)
	r.drv.SetCommon(0x18, 2, 100) // not a power of two
	r.drv.SetCommon(0x1C, 2, 1)
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK)
	if r.drv.Status()&virtio.StatusDeviceNeedsReset == 0 {
		t.Fatal("bad queue size accepted")
	}
}

func TestResetClearsState(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	r.drv.SetStatus(0)
	r.drv.SetCommon(0x16, 2, 0)
	checks := []struct {
		name string
		off  uint64
		n    int
		want uint64
	}{
		{"status", 0x14, 1, 0},
		{"config vector", 0x10, 2, pcitransport.NoVector},
		{"queue vector", 0x1A, 2, pcitransport.NoVector},
		{"queue enable", 0x1C, 2, 0},
		{"queue size", 0x18, 2, rng.QueueSize},
		{"queue desc", 0x20, 8, 0},
	}
	for _, c := range checks {
		if got := r.drv.Common(c.off, c.n); got != c.want {
			t.Errorf("%s = %#x after reset, want %#x", c.name, got, c.want)
		}
	}
}

func TestVectorOutOfRange(t *testing.T) {
	r := newRig(t, false)
	r.drv.SetCommon(0x10, 2, 40) // table has 2 entries
	if got := r.drv.Common(0x10, 2); got != pcitransport.NoVector {
		t.Fatalf("config vector %#x, want NO_VECTOR", got)
	}
	r.drv.SetCommon(0x16, 2, 5) // no such queue
	if got := r.drv.Common(0x18, 2); got != 0 {
		t.Fatalf("size of absent queue %d", got)
	}
}

func TestMSIXMasking(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(virtio.FeatureVersion1, 1, 0); err != nil {
		t.Fatal(err)
	}
	entry := uint64(barAddr + 0x3800 + 16)
	mask := func(on uint64) { r.plat.Bus.Write(entry+12, []byte{byte(on), 0, 0, 0}) }
	mask(1)
	q := r.drv.Queues[0]
	buf, _ := q.Alloc(8)
	q.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 8, Write: true}})
	r.drv.Kick(0)
	// Wait for the used entry without the interrupt.
	for q.UsedIdx() == 0 {
		if r.drv.Status()&virtio.StatusDeviceNeedsReset != 0 {
			t.Fatal("device broke")
		}
	}
	pba := make([]byte, 8)
	for pba[0]&2 == 0 { // the device sets the pending bit right after pushing
		r.plat.Bus.Read(barAddr+0x3C00, pba)
	}
	if r.plat.MSIs(1) != 0 {
		t.Fatal("interrupt delivered while masked")
	}
	mask(0)
	if r.plat.MSIs(1) != 1 {
		t.Fatalf("pending interrupt not delivered on unmask: %d", r.plat.MSIs(1))
	}
	r.plat.Bus.Read(barAddr+0x3C00, pba)
	if pba[0]&2 != 0 {
		t.Fatal("pending bit still set")
	}
}

func TestBARMove(t *testing.T) {
	r := newRig(t, false)
	const moved = 0x1_0000_0000
	r.tr.ConfigWrite(pci.RegBAR0, []byte{0, 0, 0, 0})
	r.tr.ConfigWrite(pci.RegBAR0+4, []byte{1, 0, 0, 0})
	b := make([]byte, 2)
	if r.plat.Bus.Read(barAddr+0x12, b) {
		t.Fatal("old BAR address still mapped")
	}
	if !r.plat.Bus.Read(moved+0x12, b) || b[0] != 1 {
		t.Fatalf("num_queues at the new address = %v", b)
	}
	r.tr.ConfigWrite(pci.RegCommand, []byte{0, 0})
	if r.plat.Bus.Read(moved+0x12, b) || r.plat.Doorbells() != 0 {
		t.Fatal("BAR still mapped with memory decoding off")
	}
}

func TestISR(t *testing.T) {
	r := newRig(t, false)
	r.tr.ConfigChanged()
	if got := r.drv.ISR(); got&2 == 0 {
		t.Fatalf("ISR %#x after a config change", got)
	}
	if got := r.drv.ISR(); got != 0 {
		t.Fatalf("ISR %#x not cleared by reading", got)
	}
	if got := r.drv.Common(0x15, 1); got != 1 {
		t.Fatalf("config_generation %d", got)
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r.request(t, 32)
	}
	s := r.tr.SaveState()
	if s.Queues[0].Ring == nil || s.Queues[0].Ring.NextUsed != 3 {
		t.Fatalf("queue state %+v", s.Queues[0].Ring)
	}
	// A new VMM restores into fresh objects over the same guest memory.
	plat2 := pcitest.NewPlatform()
	tr2, err := pcitransport.New(rng.New(), r.mem, plat2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr2.Close)
	r.tr.Close() // the old VMM is gone
	r.tr.Config().ConfigWrite(pci.RegCommand, []byte{0, 0})
	if err := tr2.RestoreState(s); err != nil {
		t.Fatal(err)
	}
	if got := tr2.SaveState(); !reflect.DeepEqual(got, s) {
		t.Fatalf("restored state differs:\n got %+v\nwant %+v", got, s)
	}
	// The guest carries on with the restored device.
	r.tr, r.plat, r.drv.Dev, r.drv.Plat = tr2, plat2, tr2, plat2
	if n, _ := r.request(t, 32); n != 32 {
		t.Fatalf("request after restore: used len %d", n)
	}
	bad := s
	bad.Queues = nil
	if err := tr2.RestoreState(bad); err == nil {
		t.Fatal("restore of a mismatched state succeeded")
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := pcitransport.New(badDevice{Device: rng.New(), sizes: []uint16{3}}, nil, pcitest.NewPlatform()); !errors.Is(err, pcitransport.ErrBadDevice) {
		t.Fatalf("queue size 3: %v", err)
	}
	if _, err := pcitransport.New(badDevice{Device: rng.New(), sizes: make([]uint16, 64)}, nil, pcitest.NewPlatform()); !errors.Is(err, pcitransport.ErrBadDevice) {
		t.Fatalf("64 queues: %v", err)
	}
}

// badDevice is a device description the transport must refuse.
type badDevice struct {
	*rng.Device
	sizes []uint16
}

func (b badDevice) QueueMaxSizes() []uint16 { return b.sizes }

// TestQuiesce checks that a quiesced device leaves its queues alone, even
// across SaveState, and takes the pending request after Unquiesce.
func TestQuiesce(t *testing.T) {
	r := newRig(t, false)
	if err := r.drv.Init(allFeatures, 1, 0); err != nil {
		t.Fatal(err)
	}
	r.request(t, 16)
	r.tr.Quiesce()
	q := r.drv.Queues[0]
	buf, err := q.Alloc(16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.AddChain([]virtqueuetest.Desc{{Addr: buf, Len: 16, Write: true}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(0)
	for range 3 {
		time.Sleep(20 * time.Millisecond) // give a wrongly running worker the chance to act
		if s := r.tr.SaveState(); s.Queues[0].Ring == nil || s.Queues[0].Ring.NextUsed != 1 {
			t.Fatalf("quiesced queue moved: %+v", s.Queues[0].Ring)
		}
		if _, ok := q.GetUsed(); ok {
			t.Fatal("a quiesced device completed a request")
		}
	}
	r.tr.Unquiesce()
	if u, err := r.drv.Wait(0); err != nil || u.Len != 16 {
		t.Fatalf("request after Unquiesce: %+v, %v", u, err)
	}
	r.tr.Unquiesce() // a second call is harmless
	if n, _ := r.request(t, 8); n != 8 {
		t.Fatalf("request after a second Unquiesce: used len %d", n)
	}
}
