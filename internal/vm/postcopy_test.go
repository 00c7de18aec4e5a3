package vm

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/uffd"
)

// Where postCopyFixture puts pages that the source holds but the guest
// never touches: post-copy must not ask for them before they are streamed.
const (
	untouchedAddr  = 0x200000
	untouchedPages = 8
)

// postCopyFixture is a destination armed for post-copy from a paused
// counting guest: src is the source's memory; the pages set in missing
// hold stale bytes (0xEE) on the destination until placed.
type postCopyFixture struct {
	d       *migrationDest
	src     *guestmem.Memory
	missing map[uint64]bool
	bitmaps [][]uint64
	saved   uint64 // the source's counter when it paused
}

// newPostCopyFixture runs a counting guest, pauses it, and builds a
// committed destination whose memory has every non-zero page of the
// source, except that every other one of them, the counter's, the code's
// and the untouched pages are stale and marked missing.
func newPostCopyFixture(t *testing.T) *postCopyFixture {
	t.Helper()
	m := newFlat(t, 2, countingGuest(), nil)
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
	state := encodeMigrationState(nil, &migrationState{Config: m.savedConfig(), Machine: *st})
	f := &postCopyFixture{src: copyMemory(t, m.Memory()), missing: map[uint64]bool{}, saved: counter(m)}
	t.Cleanup(f.src.Close)
	m.Stop(Exit{Reason: ExitHost})
	m.Wait()
	for k := uint64(0); k < untouchedPages; k++ {
		if _, err := f.src.WriteAt(bytes.Repeat([]byte{byte(0x40 + k)}, guestmem.PageSize), int64(untouchedAddr+k*guestmem.PageSize)); err != nil {
			t.Fatal(err)
		}
	}

	dst, err := guestmem.New(ramLayout(64))
	if err != nil {
		t.Fatal(err)
	}
	stale := bytes.Repeat([]byte{0xEE}, guestmem.PageSize)
	nonzero := 0
	for _, r := range f.src.Regions() {
		pages := uint64(len(r.Host)) / guestmem.PageSize
		bm := make([]uint64, (pages+63)/64)
		for p := uint64(0); p < pages; p++ {
			gpa := r.GPA + p*guestmem.PageSize
			data := r.Host[p*guestmem.PageSize : (p+1)*guestmem.PageSize]
			forced := gpa == counterAddr&^(guestmem.PageSize-1) || gpa == flatAddr ||
				(gpa >= untouchedAddr && gpa < untouchedAddr+untouchedPages*guestmem.PageSize)
			if !forced && !bytes.Equal(data, make([]byte, guestmem.PageSize)) {
				nonzero++
			}
			switch {
			case forced || (nonzero%2 == 1 && !bytes.Equal(data, make([]byte, guestmem.PageSize))):
				f.missing[gpa] = true
				bm[p/64] |= 1 << (p % 64)
				dst.WriteAt(stale, int64(gpa))
			default:
				dst.WriteAt(data, int64(gpa))
			}
		}
		f.bitmaps = append(f.bitmaps, bm)
	}
	f.d = &migrationDest{cfg: Config{MemoryMiB: 64, DebugExit: true}, mem: dst}
	if err := f.d.Commit(state); err != nil {
		dst.Close()
		t.Fatalf("commit: %v", err)
	}
	t.Cleanup(f.d.discard)
	t.Logf("%d pages missing", len(f.missing))
	return f
}

// page reads one page of the source.
func (f *postCopyFixture) page(t *testing.T, gpa uint64) []byte {
	b := make([]byte, guestmem.PageSize)
	if _, err := f.src.ReadAt(b, int64(gpa)); err != nil {
		t.Error(err)
	}
	return b
}

// TestPostCopyDestination runs a guest on a destination that lacks pages:
// the pages the guest touches are asked for once each and served from the
// source's memory, the rest are streamed afterwards, and memory ends up the
// source's.
func TestPostCopyDestination(t *testing.T) {
	f := newPostCopyFixture(t)
	d := f.d
	var mu sync.Mutex
	asked := map[uint64]int{}
	requests := make(chan uint64, len(f.missing))
	served := make(chan struct{})
	go func() {
		defer close(served)
		for gpa := range requests {
			if err := d.PlacePage(gpa, f.page(t, gpa)); err != nil {
				t.Errorf("place %#x: %v", gpa, err)
			}
		}
	}()
	request := func(gpa uint64) {
		mu.Lock()
		asked[gpa]++
		mu.Unlock()
		select {
		case requests <- gpa:
		default:
			t.Errorf("more requests than missing pages (%#x)", gpa)
		}
	}
	if err := d.ArmPostCopy(f.bitmaps, request); err != nil {
		t.Fatal(err)
	}
	m := d.m
	if err := m.Snapshot(filepath.Join(t.TempDir(), "snap")); !errors.Is(err, ErrPostCopyRunning) {
		t.Errorf("snapshot during post-copy: %v, want ErrPostCopyRunning", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := m.MigrateTo(context.Background(), a, migration.Options{}); !errors.Is(err, ErrPostCopyRunning) {
		t.Errorf("migration during post-copy: %v, want ErrPostCopyRunning", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(Exit{Reason: ExitHost}); m.Wait() }()
	waitCounter(t, m, f.saved+1000)

	// The background stream: every page still missing (placed ones are
	// ignored).
	for gpa := range f.missing {
		if err := d.PlacePage(gpa, f.page(t, gpa)); err != nil {
			t.Fatalf("stream %#x: %v", gpa, err)
		}
	}
	d.EndPostCopy(nil)
	<-d.pc.done // the fault handler has returned
	close(requests)
	<-served
	if err := m.postCopyBusy("test"); err != nil {
		t.Errorf("after post-copy: %v", err)
	}
	if err := m.Pause(); err != nil {
		t.Fatal(err)
	}
	if c := counter(m); c < f.saved+1000 {
		t.Errorf("counter %d, the source stopped at %d", c, f.saved)
	}
	for _, r := range f.src.Regions() {
		for off := 0; off < len(r.Host); off += guestmem.PageSize {
			gpa := r.GPA + uint64(off)
			if gpa == counterAddr&^(guestmem.PageSize-1) {
				continue // the guest counts on
			}
			got, err := m.Memory().Slice(gpa, guestmem.PageSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, r.Host[off:off+guestmem.PageSize]) {
				t.Fatalf("page %#x differs from the source's (missing %v)", gpa, f.missing[gpa])
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for gpa, n := range asked {
		if !f.missing[gpa] {
			t.Errorf("page %#x was asked for but was not missing", gpa)
		}
		if n != 1 {
			t.Errorf("page %#x was asked for %d times", gpa, n)
		}
		if gpa >= untouchedAddr && gpa < untouchedAddr+untouchedPages*guestmem.PageSize {
			t.Errorf("page %#x, which nothing touched, was asked for", gpa)
		}
	}
	for _, gpa := range []uint64{counterAddr &^ (guestmem.PageSize - 1), flatAddr} {
		if asked[gpa] == 0 {
			t.Errorf("page %#x, which the guest uses, was never asked for", gpa)
		}
	}
	t.Logf("%d of %d missing pages asked for", len(asked), len(f.missing))
}

// TestPostCopyFailureStops ends post-copy with an error while the vCPUs
// and a VMM thread wait on pages that never come: the machine stops with an
// error exit, the waiters are released only then, the fault handler ends,
// and nothing hangs.
func TestPostCopyFailureStops(t *testing.T) {
	f := newPostCopyFixture(t)
	d := f.d
	asked := make(chan uint64, len(f.missing))
	if err := d.ArmPostCopy(f.bitmaps, func(gpa uint64) { asked <- gpa }); err != nil {
		t.Fatal(err)
	}
	m := d.m
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case gpa := <-asked:
		t.Logf("a vCPU waits on page %#x", gpa)
	case <-time.After(30 * time.Second):
		m.Stop(Exit{Reason: ExitHost})
		t.Fatal("the guest asked for no page")
	}
	// A VMM thread waits too, on a page nothing else touches.
	read := make(chan byte, 1)
	go func() {
		b := make([]byte, 1)
		m.Memory().ReadAt(b, untouchedAddr)
		read <- b[0]
	}()
	for gpa := uint64(0); gpa != untouchedAddr; {
		select {
		case gpa = <-asked:
		case <-time.After(30 * time.Second):
			t.Fatal("the VMM's read did not ask for its page")
		}
	}
	ended := make(chan struct{})
	go func() { d.EndPostCopy(errors.New("link down")); close(ended) }()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("EndPostCopy did not return")
	}
	ex := waitExit(t, m)
	if ex.Reason != ExitError || !errors.Is(ex.Err, ErrPostCopyFailed) || !strings.Contains(ex.Err.Error(), "link down") {
		t.Fatalf("exit %v (%v), want an error exit for the failed post-copy", ex.Reason, ex.Err)
	}
	<-d.pc.done
	// Released once the machine stopped: on the zero page the kernel put
	// there, not on the stale copy that was dropped.
	if v := <-read; v != 0 {
		t.Errorf("the VMM's read of a page that never came saw %#x", v)
	}
	if err := m.Snapshot(filepath.Join(t.TempDir(), "snap")); !errors.Is(err, ErrPostCopyRunning) {
		t.Errorf("snapshot after a failed post-copy: %v, want ErrPostCopyRunning", err)
	}
	if err := d.PlacePage(flatAddr, f.page(t, flatAddr)); err == nil {
		t.Error("a page was placed after post-copy ended")
	}
}

// TestPostCopyRejects: malformed missing-page bitmaps and pages do not arm
// post-copy or reach guest memory.
func TestPostCopyRejects(t *testing.T) {
	f := newPostCopyFixture(t)
	d := f.d
	nop := func(uint64) {}
	if err := d.PlacePage(flatAddr, f.page(t, flatAddr)); err == nil {
		t.Error("a page was placed before post-copy was armed")
	}
	long := append(append([]uint64(nil), f.bitmaps[0]...), 1)
	for _, c := range []struct {
		name string
		bm   [][]uint64
	}{
		{"no regions", nil},
		{"one region too many", append(append([][]uint64(nil), f.bitmaps...), f.bitmaps[0])},
		{"bitmap too short", [][]uint64{f.bitmaps[0][:1]}},
		{"bitmap too long", [][]uint64{long}},
	} {
		if err := d.ArmPostCopy(c.bm, nop); err == nil {
			t.Fatalf("%s: armed", c.name)
		}
		if d.pc != nil {
			t.Fatalf("%s: left post-copy half armed", c.name)
		}
	}
	if err := d.ArmPostCopy(f.bitmaps, nop); err != nil {
		t.Fatal(err)
	}
	defer d.EndPostCopy(errors.New("test over"))
	if err := d.ArmPostCopy(f.bitmaps, nop); err == nil {
		t.Error("armed twice")
	}
	for _, c := range []struct {
		name string
		gpa  uint64
		n    int
	}{
		{"short page", flatAddr, 100},
		{"unaligned", flatAddr + 8, guestmem.PageSize},
		{"outside RAM", 1 << 40, guestmem.PageSize},
	} {
		if err := d.PlacePage(c.gpa, make([]byte, c.n)); err == nil {
			t.Errorf("%s: placed", c.name)
		}
	}
}

// TestPostCopyGoWaitsThroughAllocation: Go code blocked on a missing page
// must not stall the process when it allocates meanwhile. Without
// holdRuntime, the GC cycle that the allocation starts would stop the
// world, wait forever for the blocked goroutine (it sleeps inside a page
// fault, in memmove), and so keep the fault handler from ever serving it.
func TestPostCopyGoWaitsThroughAllocation(t *testing.T) {
	f := newPostCopyFixture(t)
	asked := make(chan uint64, 64)
	if err := f.d.ArmPostCopy(f.bitmaps, func(gpa uint64) { asked <- gpa }); err != nil {
		t.Fatal(err)
	}
	read := make(chan byte, 1)
	go func() {
		b := make([]byte, 1)
		f.d.m.Memory().ReadAt(b, untouchedAddr)
		read <- b[0]
	}()
	for gpa := uint64(0); gpa != untouchedAddr; {
		select {
		case gpa = <-asked:
		case <-time.After(30 * time.Second):
			t.Fatal("the read did not ask for its page")
		}
	}
	// Allocate well past the GC's next target while the read waits.
	var sink [][]byte
	for i := 0; i < 4096; i++ {
		sink = append(sink, make([]byte, 64<<10))
		if len(sink) > 64 {
			sink = sink[1:]
		}
	}
	if err := f.d.PlacePage(untouchedAddr, f.page(t, untouchedAddr)); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-read:
		if v != 0x40 {
			t.Fatalf("the read saw %#x, want the placed page's 0x40", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read never finished")
	}
	f.d.EndPostCopy(errors.New("test over"))
}

// newUffdDest arms post-copy on a bare destination, no KVM needed (only
// userfaultfd): 2 MiB of guest RAM whose page 1 is missing, served by
// request; page 2 is a zero page the source never sent.
func newUffdDest(t *testing.T, request func(gpa uint64)) (*migrationDest, *Machine) {
	t.Helper()
	mem, err := guestmem.New(ramLayout(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	m := &Machine{mem: mem, done: make(chan struct{})}
	m.cond = sync.NewCond(&m.mu)
	d := &migrationDest{m: m, mem: mem, committed: true}
	bm := make([]uint64, 2<<20/guestmem.PageSize/64)
	bm[0] = 1 << 1
	if err := d.ArmPostCopy([][]uint64{bm}, request); errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		t.Skipf("userfaultfd not permitted here: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.EndPostCopy(errors.New("test over")) })
	return d, m
}

// stopped reports the machine's exit if something stopped it.
func stopped(m *Machine) (Exit, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exit, m.stopping
}

// TestPostCopyStaleFaultAtEnd: the handler may get to a fault only after
// its page came and post-copy ended. In the lab a vCPU faulted on a missing
// page; the handler read the fault, then waited for pc.mu while PlacePage
// brought the page (which woke the vCPU); the last page came next and
// EndPostCopy(nil) unregistered guest RAM; the handler's ZeroPage then
// failed with ENOENT, which stopped the machine as a failed post-copy (its
// guest never ran on). Such a fault is stale: the machine must run on.
func TestPostCopyStaleFaultAtEnd(t *testing.T) {
	asked := make(chan uint64, 4)
	d, m := newUffdDest(t, func(gpa uint64) { asked <- gpa })
	pc := d.pc
	host := m.mem.Regions()[0].Host
	// A real wait first: a read of the missing page asks for it and waits
	// for PlacePage.
	read := make(chan byte, 1)
	go func() { v := host[guestmem.PageSize+5]; read <- v }()
	select {
	case gpa := <-asked:
		if gpa != guestmem.PageSize {
			t.Fatalf("asked for %#x, want %#x", gpa, guestmem.PageSize)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not ask for its page")
	}
	if err := d.PlacePage(guestmem.PageSize, bytes.Repeat([]byte{0x77}, guestmem.PageSize)); err != nil {
		t.Fatal(err)
	}
	if v := <-read; v != 0x77 {
		t.Fatalf("read %#x, want the placed 0x77", v)
	}
	// The same fault reported again while post-copy runs (the handler got
	// to it after the page came): ZeroPage finds the page there and wakes.
	stale := uffd.Fault{Addr: uffd.Addr(host[guestmem.PageSize:]), Write: true}
	pc.fault(stale)
	if ex, ok := stopped(m); ok {
		t.Fatalf("a fault on a placed page stopped the machine: %v", ex.Err)
	}
	if host[guestmem.PageSize] != 0x77 {
		t.Fatal("the placed page changed")
	}
	// Every page is in: EndPostCopy(nil) marks the end and unregisters guest
	// RAM before it closes the userfaultfd. Handled in between, the stale
	// fault (on the placed page, or on a zero page never sent) must not be
	// taken for a failure.
	pc.mu.Lock()
	if pc.left != 0 {
		t.Fatalf("%d pages left", pc.left)
	}
	pc.ended = true
	pc.mu.Unlock()
	pc.disarm()
	pc.fault(stale)
	pc.fault(uffd.Fault{Addr: uffd.Addr(host[2*guestmem.PageSize:])})
	if ex, ok := stopped(m); ok {
		t.Fatalf("a fault handled after the end stopped the machine: %v", ex.Err)
	}
	pc.release()
	m.clearPostCopy()
	if host[guestmem.PageSize] != 0x77 || host[2*guestmem.PageSize] != 0 {
		t.Fatal("guest RAM changed after the end")
	}
	pc.fault(stale) // after release: the userfaultfd is closed
	if ex, ok := stopped(m); ok {
		t.Fatalf("a fault handled after release stopped the machine: %v", ex.Err)
	}
}
