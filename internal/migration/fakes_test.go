package migration

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeVM is a Source backed by plain byte slices, with a "guest" goroutine
// that dirties memory (and disks) until the VM is paused.
type fakeVM struct {
	mu        sync.Mutex
	regions   []Region
	mem       [][]byte
	dirty     [][]uint64
	disks     [][]byte
	diskDirty [][]uint64
	paused    bool
	pauses    int
	resumes   int
	throttle  int
	state     []byte
	writes    int
	stateErr  error // DeviceState fails with it
}

var errNotRAM = errors.New("fake: address outside RAM")

func newFakeVM(seed uint64, regions []Region, diskSizes ...int) *fakeVM {
	v := &fakeVM{regions: regions, state: []byte(fmt.Sprintf("device state %d", seed))}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, r := range regions {
		m := make([]byte, r.Size)
		for p := 0; p < len(m); p += PageSize {
			if rng.IntN(2) == 0 { // half the pages start non-zero
				for i := 0; i < 64; i++ {
					m[p+rng.IntN(PageSize)] = byte(rng.Uint32())
				}
			}
		}
		v.mem = append(v.mem, m)
		v.dirty = append(v.dirty, make([]uint64, (r.Size/PageSize+63)/64))
	}
	for _, size := range diskSizes {
		d := make([]byte, size)
		for i := 0; i < size; i += DiskBlockSize * 3 {
			d[i+7] = byte(i/DiskBlockSize + 1)
		}
		v.disks = append(v.disks, d)
		v.diskDirty = append(v.diskDirty, make([]uint64, (size/DiskBlockSize+64)/64))
	}
	return v
}

func find(regions []Region, mem [][]byte, gpa, n uint64) ([]byte, error) {
	for i, r := range regions {
		if gpa >= r.GPA && gpa-r.GPA < r.Size && n <= r.Size-(gpa-r.GPA) {
			return mem[i][gpa-r.GPA : gpa-r.GPA+n], nil
		}
	}
	return nil, fmt.Errorf("%w: %#x+%#x", errNotRAM, gpa, n)
}

func (v *fakeVM) Regions() []Region { return v.regions }

func (v *fakeVM) ReadMemory(gpa uint64, p []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, err := find(v.regions, v.mem, gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

func takeBitmaps(bms [][]uint64) [][]uint64 {
	out := make([][]uint64, len(bms))
	for i, bm := range bms {
		out[i] = append([]uint64(nil), bm...)
		clear(bm)
	}
	return out
}

func (v *fakeVM) DirtyBitmap() ([][]uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return takeBitmaps(v.dirty), nil
}

func (v *fakeVM) Pause() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.paused = true
	v.pauses++
	return nil
}

func (v *fakeVM) Resume() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.paused {
		return errors.New("fake: resume of a running VM")
	}
	v.paused = false
	v.resumes++
	return nil
}

func (v *fakeVM) DeviceState() ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.paused {
		return nil, errors.New("fake: device state captured while running")
	}
	if v.stateErr != nil {
		return nil, v.stateErr
	}
	return append([]byte(nil), v.state...), nil
}

func (v *fakeVM) Throttle(percent int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.throttle = percent
	return nil
}

func (v *fakeVM) Disks() []int64 {
	var out []int64
	for _, d := range v.disks {
		out = append(out, int64(len(d)))
	}
	return out
}

func (v *fakeVM) ReadDisk(disk int, off int64, p []byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	copy(p, v.disks[disk][off:])
	return nil
}

func (v *fakeVM) DirtyDiskBlocks(disk int) ([]uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return takeBitmaps(v.diskDirty[disk : disk+1])[0], nil
}

// step performs one guest write unless paused; it reports whether it wrote.
func (v *fakeVM) step(rng *rand.Rand) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.paused {
		return false
	}
	i := rng.IntN(len(v.regions))
	page := rng.IntN(int(v.regions[i].Size / PageSize))
	b := v.mem[i][page*PageSize : (page+1)*PageSize]
	if rng.IntN(8) == 0 {
		clear(b) // pages also become zero again
	} else {
		for k := 0; k < 16; k++ {
			b[rng.IntN(PageSize)] = byte(rng.Uint32())
		}
	}
	v.dirty[i][page/64] |= 1 << (page % 64)
	// A counter in page 0 that only moves forward.
	v.writes++
	v.mem[0][0], v.mem[0][1] = byte(v.writes), byte(v.writes>>8)
	v.dirty[0][0] |= 1
	if len(v.disks) > 0 && rng.IntN(4) == 0 {
		d := rng.IntN(len(v.disks))
		off := rng.IntN(len(v.disks[d]))
		v.disks[d][off] = byte(rng.Uint32())
		v.diskDirty[d][off/DiskBlockSize/64] |= 1 << (off / DiskBlockSize % 64)
	}
	return true
}

func (v *fakeVM) throttled() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.throttle
}

// guestWrites returns how many writes the guest made.
func (v *fakeVM) guestWrites() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.writes
}

// runGuest dirties memory until stop closes, pausing briefly now and then
// (a guest that never rests could never converge, by design).
func (v *fakeVM) runGuest(stop <-chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		if !v.step(rng) {
			time.Sleep(100 * time.Microsecond)
		}
		if th := v.throttled(); th > 0 {
			time.Sleep(time.Duration(th) * time.Microsecond)
		}
		if n%32 == 0 {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// fakeDest is a Destination backed by byte slices.
type fakeDest struct {
	mu        sync.Mutex
	regions   []Region
	mem       [][]byte
	disks     [][]byte
	committed []byte
	writes    int
	// hooks for failure tests
	onWrite  func(n int) error
	onCommit func() error
}

func newFakeDest(regions []Region, diskSizes ...int) *fakeDest {
	d := &fakeDest{regions: regions}
	for _, r := range regions {
		d.mem = append(d.mem, make([]byte, r.Size))
	}
	for _, s := range diskSizes {
		d.disks = append(d.disks, make([]byte, s))
	}
	return d
}

func (d *fakeDest) Regions() []Region { return d.regions }

func (d *fakeDest) WriteMemory(gpa uint64, p []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gpa%PageSize != 0 || len(p) != PageSize {
		return fmt.Errorf("fake: unaligned write %#x+%d", gpa, len(p))
	}
	b, err := find(d.regions, d.mem, gpa, uint64(len(p)))
	if err != nil {
		return err
	}
	d.writes++
	if d.onWrite != nil {
		if err := d.onWrite(d.writes); err != nil {
			return err
		}
	}
	copy(b, p)
	return nil
}

func (d *fakeDest) Commit(state []byte) error {
	if d.onCommit != nil {
		if err := d.onCommit(); err != nil {
			return err
		}
	}
	d.committed = append([]byte(nil), state...)
	return nil
}

func (d *fakeDest) Disks() []int64 {
	var out []int64
	for _, b := range d.disks {
		out = append(out, int64(len(b)))
	}
	return out
}

func (d *fakeDest) WriteDisk(disk int, off int64, p []byte) error {
	copy(d.disks[disk][off:], p)
	return nil
}

// memOnlyDest hides fakeDest's disk methods (a shared-storage destination).
type memOnlyDest struct{ d *fakeDest }

func (m memOnlyDest) Regions() []Region                      { return m.d.Regions() }
func (m memOnlyDest) WriteMemory(gpa uint64, p []byte) error { return m.d.WriteMemory(gpa, p) }
func (m memOnlyDest) Commit(state []byte) error              { return m.d.Commit(state) }

// sameMemory fails the test unless src and dst hold identical RAM and disks.
func sameMemory(t *testing.T, v *fakeVM, d *fakeDest) {
	t.Helper()
	for i := range v.mem {
		if !bytes.Equal(v.mem[i], d.mem[i]) {
			for p := 0; p < len(v.mem[i]); p += PageSize {
				if !bytes.Equal(v.mem[i][p:p+PageSize], d.mem[i][p:p+PageSize]) {
					t.Fatalf("region %d page %#x differs after migration", i, p)
				}
			}
		}
	}
	for i := range v.disks {
		if !bytes.Equal(v.disks[i], d.disks[i]) {
			t.Fatalf("disk %d differs after migration", i)
		}
	}
}

// connPair returns two connected conns: net.Pipe or loopback TCP.
func connPair(t testing.TB, tcp bool) (src, dst net.Conn) {
	t.Helper()
	if !tcp {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
