package balloon_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/balloon"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
	"github.com/govisor/govisor/internal/virtio/pcitransport/pcitest"
	"github.com/govisor/govisor/internal/virtio/virtqueuetest"
)

const allFeat = ^uint64(0)

type rig struct {
	dev  *balloon.Device
	tr   *pcitransport.Transport
	plat *pcitest.Platform
	drv  *pcitest.Driver
	mem  *virtqueuetest.Memory
}

func newRig(t testing.TB, opts balloon.Options, features uint64) *rig {
	t.Helper()
	dev, err := balloon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{dev: dev, plat: pcitest.NewPlatform(), mem: virtqueuetest.NewMemory(0, 8<<20)}
	r.attach(t)
	nq := 2
	if features&balloon.FeatureStatsVQ != 0 {
		nq = 3
	}
	if err := r.drv.Init(features, nq, 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// attach puts r.dev behind a new transport and probes it.
func (r *rig) attach(t testing.TB) {
	t.Helper()
	var err error
	if r.tr, err = pcitransport.New(r.dev, r.mem, r.plat); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tr.Close)
	r.dev.SetConfigNotifier(r.tr.ConfigChanged)
	if r.drv, err = pcitest.Probe(r.tr, r.plat, r.mem, 0xE0000000); err != nil {
		t.Fatal(err)
	}
}

// send puts buf on queue q as one readable buffer and waits for it.
func (r *rig) send(t testing.TB, q int, buf []byte) {
	t.Helper()
	vq := r.drv.Queues[q]
	a, err := vq.Alloc(uint64(max(len(buf), 1)))
	if err != nil {
		t.Fatal(err)
	}
	r.mem.Write(a, buf)
	if _, err := vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: uint32(len(buf))}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(q)
	if _, err := r.drv.Wait(q); err != nil {
		t.Fatal(err)
	}
}

// resident reports whether the host page at the start of b is in RAM,
// from /proc/self/pagemap (bit 63: present).
func resident(t *testing.T, b []byte) bool {
	t.Helper()
	addr, err := strconv.ParseUint(strings.TrimPrefix(fmt.Sprintf("%p", &b[0]), "0x"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skipf("no pagemap: %v", err)
	}
	defer f.Close()
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(addr/uint64(os.Getpagesize())*8)); err != nil {
		t.Skipf("pagemap: %v", err)
	}
	return binary.LittleEndian.Uint64(e[:])>>63 == 1
}

func pfns(gpas ...uint64) []byte {
	var b []byte
	for _, g := range gpas {
		b = binary.LittleEndian.AppendUint32(b, uint32(g/balloon.PageSize))
	}
	return b
}

func TestInflateReleasesMemory(t *testing.T) {
	r := newRig(t, balloon.Options{}, allFeat)
	base, err := r.mem.Alloc(4*balloon.PageSize, balloon.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fill := bytes.Repeat([]byte{0xA5}, 4*balloon.PageSize)
	r.mem.Write(base, fill)
	// Pages 0, 1 and 3: a run of two and a single page; page 2 stays.
	r.send(t, balloon.QueueInflate, pfns(base, base+balloon.PageSize, base+3*balloon.PageSize))
	host, _ := r.mem.Slice(base, 4*balloon.PageSize)
	for i, want := range []bool{false, false, true, false} {
		if got := resident(t, host[i*balloon.PageSize:]); got != want {
			t.Fatalf("page %d resident %v after inflate, want %v", i, got, want)
		}
	}
	for i, want := range []byte{0, 0, 0xA5, 0} {
		p := make([]byte, balloon.PageSize)
		r.mem.Read(base+uint64(i)*balloon.PageSize, p)
		if !bytes.Equal(p, bytes.Repeat([]byte{want}, balloon.PageSize)) {
			t.Fatalf("page %d does not read as %#x", i, want)
		}
	}
	if !r.mem.Dirty(base) {
		t.Fatal("released page not marked dirty")
	}
	r.send(t, balloon.QueueDeflate, pfns(base, base+balloon.PageSize))
	// A page number outside guest RAM is counted, not fatal.
	r.send(t, balloon.QueueInflate, pfns(1<<40))
	c := r.dev.Counters()
	if c.Inflated != 4 || c.Deflated != 2 || c.BadPFNs != 1 || c.ReleaseErrors != 0 {
		t.Fatalf("counters %+v", c)
	}
	if st := r.drv.Status(); st&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatalf("status %#x", st)
	}
}

func TestTargetAndActual(t *testing.T) {
	r := newRig(t, balloon.Options{}, allFeat)
	gen := r.drv.Common(0x15, 1)
	before := r.plat.MSIs(0)
	r.dev.SetTarget(1234)
	if got := binary.LittleEndian.Uint32(r.drv.DeviceConfig(0, 4)); got != 1234 {
		t.Fatalf("num_pages %d", got)
	}
	if r.plat.MSIs(0) != before+1 || r.drv.Common(0x15, 1) == gen {
		t.Fatal("no configuration change interrupt")
	}
	r.dev.SetTarget(1234) // unchanged: no interrupt
	if r.plat.MSIs(0) != before+1 {
		t.Fatal("interrupt for an unchanged target")
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], 1000)
	r.plat.Bus.Write(r.drv.BAR+r.drv.Regions[4]+4, b[:])
	r.plat.Bus.Write(r.drv.BAR+r.drv.Regions[4], b[:]) // num_pages is read-only
	if r.dev.Actual() != 1000 || r.dev.Target() != 1234 {
		t.Fatalf("actual %d target %d", r.dev.Actual(), r.dev.Target())
	}
	if got := binary.LittleEndian.Uint32(r.drv.DeviceConfig(4, 4)); got != 1000 {
		t.Fatalf("config actual %d", got)
	}
}

func TestFeatures(t *testing.T) {
	tests := []struct {
		opts balloon.Options
		want uint64
	}{
		{balloon.Options{}, balloon.FeatureStatsVQ},
		{balloon.Options{DeflateOnOOM: true}, balloon.FeatureStatsVQ | balloon.FeatureDeflateOnOOM},
	}
	for _, tt := range tests {
		d, err := balloon.New(tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Features() &^ virtio.CommonFeatures; got != tt.want {
			t.Errorf("%+v: features %#x, want %#x", tt.opts, got, tt.want)
		}
	}
	if _, err := balloon.New(balloon.Options{StatsInterval: -1}); err == nil {
		t.Fatal("negative interval accepted")
	}
}

func statsBuf(pairs ...uint64) []byte {
	var b []byte
	for i := 0; i+1 < len(pairs); i += 2 {
		b = binary.LittleEndian.AppendUint16(b, uint16(pairs[i]))
		b = binary.LittleEndian.AppendUint64(b, pairs[i+1])
	}
	return b
}

// statsRound is the driver's side of one stats exchange: it sends buf
// and returns the buffer's address.
func addStats(t testing.TB, r *rig, buf []byte) uint64 {
	t.Helper()
	vq := r.drv.Queues[balloon.QueueStats]
	a, _ := vq.Alloc(uint64(len(buf)))
	r.mem.Write(a, buf)
	if _, err := vq.AddChain([]virtqueuetest.Desc{{Addr: a, Len: uint32(len(buf))}}); err != nil {
		t.Fatal(err)
	}
	r.drv.Kick(balloon.QueueStats)
	return a
}

func waitStats(t testing.TB, d *balloon.Device, cond func(balloon.Stats) bool) balloon.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never arrived: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStats(t *testing.T) {
	r := newRig(t, balloon.Options{}, allFeat)
	if !r.dev.Stats().Updated.IsZero() {
		t.Fatal("stats before the driver sent any")
	}
	addStats(t, r, statsBuf(balloon.TagFreeMemory, 100<<20, balloon.TagTotalMemory, 512<<20, 99, 7, balloon.TagMajorFaults, 3))
	s := waitStats(t, r.dev, func(s balloon.Stats) bool { return !s.Updated.IsZero() })
	if s.FreeMemory != 100<<20 || s.TotalMemory != 512<<20 || s.MajorFaults != 3 || s.SwapIn != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The device holds the buffer until it wants fresh statistics.
	if _, ok := r.drv.Queues[balloon.QueueStats].GetUsed(); ok {
		t.Fatal("stats buffer returned without a request")
	}
	for round := range 3 {
		r.dev.RequestStats()
		if _, err := r.drv.Wait(balloon.QueueStats); err != nil {
			t.Fatal(err)
		}
		free := uint64(round+1) << 20
		addStats(t, r, statsBuf(balloon.TagFreeMemory, free, balloon.TagAvailableMemory, 2*free))
		s = waitStats(t, r.dev, func(s balloon.Stats) bool { return s.FreeMemory == free })
		if s.AvailableMemory != 2*free || s.TotalMemory != 0 {
			t.Fatalf("round %d: stats %+v", round, s)
		}
	}
}

func TestPeriodicStats(t *testing.T) {
	r := newRig(t, balloon.Options{StatsInterval: time.Millisecond}, allFeat)
	addStats(t, r, statsBuf(balloon.TagFreeMemory, 1))
	if _, err := r.drv.Wait(balloon.QueueStats); err != nil {
		t.Fatalf("the device never asked for statistics: %v", err)
	}
}

func TestNoStatsQueue(t *testing.T) {
	r := newRig(t, balloon.Options{}, allFeat&^balloon.FeatureStatsVQ)
	r.dev.RequestStats() // nobody to ask: no effect
	base, _ := r.mem.Alloc(balloon.PageSize, balloon.PageSize)
	r.send(t, balloon.QueueInflate, pfns(base))
	if r.dev.Counters().Inflated != 1 {
		t.Fatal("inflate without the stats queue failed")
	}
}

func TestSaveRestore(t *testing.T) {
	r := newRig(t, balloon.Options{DeflateOnOOM: true}, allFeat)
	r.dev.SetTarget(77)
	addStats(t, r, statsBuf(balloon.TagFreeMemory, 5<<20))
	waitStats(t, r.dev, func(s balloon.Stats) bool { return s.FreeMemory == 5<<20 })
	ts := r.tr.SaveState()
	ds := r.dev.SaveState()
	if !ds.StatsHeld || ds.Target != 77 {
		t.Fatalf("state %+v", ds)
	}

	// A new device and transport over the same guest memory.
	dev, err := balloon.New(balloon.Options{DeflateOnOOM: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.RestoreState(ds); err != nil {
		t.Fatal(err)
	}
	r.tr.Close()
	tr, err := pcitransport.New(dev, r.mem, r.plat)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	if err := tr.RestoreState(ts); err != nil {
		t.Fatal(err)
	}
	if dev.Target() != 77 || dev.Stats().FreeMemory != 5<<20 {
		t.Fatalf("restored target %d stats %+v", dev.Target(), dev.Stats())
	}
	if got := dev.SaveState(); got != ds {
		t.Fatalf("state after restore %+v, want %+v", got, ds)
	}
	// The restored device still holds the driver's buffer and returns it.
	dev.RequestStats()
	if _, err := r.drv.Wait(balloon.QueueStats); err != nil {
		t.Fatal(err)
	}
	other, _ := balloon.New(balloon.Options{})
	if err := other.RestoreState(ds); err == nil {
		t.Fatal("restore with different features succeeded")
	}
}

func TestResetDropsHeldBuffer(t *testing.T) {
	r := newRig(t, balloon.Options{}, allFeat)
	addStats(t, r, statsBuf(balloon.TagFreeMemory, 1))
	waitStats(t, r.dev, func(s balloon.Stats) bool { return s.FreeMemory == 1 })
	// The driver resets and sets the queues up again: the old buffer is
	// gone, so a request must not return it.
	r.drv.Queues[balloon.QueueStats].Reset()
	if err := r.drv.Init(allFeat, 3, 0); err != nil {
		t.Fatal(err)
	}
	r.dev.RequestStats()
	addStats(t, r, statsBuf(balloon.TagFreeMemory, 2))
	waitStats(t, r.dev, func(s balloon.Stats) bool { return s.FreeMemory == 2 })
	r.dev.RequestStats()
	u, err := r.drv.Wait(balloon.QueueStats)
	if err != nil {
		t.Fatal(err)
	}
	if r.drv.Queues[balloon.QueueStats].UsedIdx() != 1 || u.Len != 0 {
		t.Fatalf("used idx %d", r.drv.Queues[balloon.QueueStats].UsedIdx())
	}
}
