package vm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/virtio"
	"github.com/govisor/govisor/internal/virtio/pcitransport"
)

// The hostile-guest suite (issue 15): one tiny guest, booted once, attacks
// the VMM's devices one thing at a time. vCPU 0 runs the attacks; vCPU 1
// only counts (hostileCounter), so the suite sees whether the other vCPUs
// keep running; a second machine in the same process counts and keeps a
// pattern in its RAM, so it sees whether another VM (and host memory next
// to the attacked guest's) is touched.
//
// After each attack the guest writes the attack's number to the wait port;
// the VMM's exit handler (on vCPU 0's thread, so the guest waits) runs the
// host-side checks: the device reaches the state the spec asks for (virtio
// 1.2 §2.1.2: a device that finds the driver's structures broken sets
// DEVICE_NEEDS_RESET; §2.7 says what is broken for a split queue), and
// both counters still move. Then the guest reads the device's status
// register itself and reports it on the report port, so the suite also
// checks what a driver would see.
const (
	hostileWaitPort   = 0x510
	hostileReportPort = 0x514
	hostileCounter    = 0x3000    // vCPU 1's liveness counter
	hostileProgress   = 0x3800    // the attack vCPU 0 began, then the one it ended
	hostileAreaBase   = 0x1000000 // per-attack queue areas, 64 KiB each
	hostileAreaSize   = 0x10000
	hostileDone       = 0xFFFF // wait-port value after the last attack
	hostilePatternAt  = 0x800000
	hostilePatternLen = 1 << 20
	hostileWait       = 20 * time.Second // nested KVM under TCG is slow
)

// Virtio PCI common configuration offsets (virtio 1.2 §4.1.4.3), as the
// guest writes them.
const (
	ccDriverFeatureSel = 0x08
	ccDriverFeature    = 0x0C
	ccConfigVector     = 0x10
	ccStatus           = 0x14
	ccQueueSelect      = 0x16
	ccQueueSize        = 0x18
	ccQueueVector      = 0x1A
	ccQueueEnable      = 0x1C
	ccQueueDesc        = 0x20
	ccQueueDriver      = 0x28
	ccQueueDevice      = 0x30
	barISR             = 0x1000
	barDevCfg          = 0x2000
	barNotify          = 0x3000
	barMSIXTable       = 0x3800
	barMSIXPBA         = 0x3C00
)

// want is what an attack must leave its device in.
type want int

const (
	wantNone       want = iota // no device status to check
	wantNeedsReset             // DEVICE_NEEDS_RESET set (§2.1.2)
	wantHealthy                // DRIVER_OK, no NEEDS_RESET
)

// hdev is a device of the attacked machine, as the guest finds it.
type hdev struct {
	id   string
	slot int
	bar  uint64 // where the VMM placed BAR 0 at boot
	tr   *pcitransport.Transport
}

// status reads the device status register through the BAR's handler, as
// the VMM's own view of the device.
func (d *hdev) status() uint8 {
	var b [1]byte
	d.tr.MMIO().Read(ccStatus, b[:])
	return b[0]
}

// hqueue is one virtqueue the guest sets up in an attack area.
type hqueue struct {
	idx, size         uint16
	desc, avail, used uint64
	next              uint16 // the next available-ring index the guest fills
}

// attack is one entry of the suite.
type attack struct {
	name  string
	dev   *hdev
	want  want
	check func() error // host-side, at the wait port; may poll
	err   error
	took  time.Duration // the host-side checks'
}

type preload struct {
	gpa  uint64
	data []byte
}

// hostileRun builds the guest program and checks it as it runs.
type hostileRun struct {
	t        *testing.T
	m, other *Machine
	a        gasm
	devs     map[string]*hdev
	attacks  []*attack
	preloads []preload
	nextArea uint64
	diskPath string // vda's image

	mu        sync.Mutex
	lastCount uint64
	lastOther uint64
	lastEnd   time.Time // when the previous attack was logged
	done      chan struct{}
	doneOnce  sync.Once
}

func (h *hostileRun) errorf(format string, args ...any) {
	h.t.Helper()
	h.t.Errorf(format, args...)
}

// area returns a fresh, zeroed 64 KiB region of guest RAM for an attack.
func (h *hostileRun) area() uint64 {
	a := hostileAreaBase + h.nextArea*hostileAreaSize
	h.nextArea++
	return a
}

// add appends an attack: emit writes its guest code, check (optional) its
// host-side wait and checks.
func (h *hostileRun) add(name string, d *hdev, w want, emit func(), check func() error) {
	i := len(h.attacks)
	h.attacks = append(h.attacks, &attack{name: name, dev: d, want: w, check: check})
	h.a.st32(hostileProgress, uint32(i))
	emit()
	h.a.st32(hostileProgress+4, uint32(i))
	h.a.out(hostileWaitPort, 4, uint32(i))
	if d != nil {
		h.a.ld(d.bar+ccStatus, 1)
		h.a.report(hostileReportPort, uint16(i))
	}
}

// alive checks that vCPU 1 and the other machine still count.
func (h *hostileRun) alive() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := poll("vCPU 1's counter to move", func() bool { return readCounter(h.m, hostileCounter) != h.lastCount }); err != nil {
		return err
	}
	h.lastCount = readCounter(h.m, hostileCounter)
	if err := poll("the other machine's counter to move", func() bool { return readCounter(h.other, counterAddr) != h.lastOther }); err != nil {
		return err
	}
	h.lastOther = readCounter(h.other, counterAddr)
	return nil
}

func readCounter(m *Machine, at uint64) uint64 {
	var b [8]byte
	m.Memory().ReadAt(b[:], int64(at))
	return binary.LittleEndian.Uint64(b[:])
}

// trapLog records what catchAll's handlers report: a vector (a 1-byte
// write), then 32-bit halves of CR2 and the handler's stack.
type trapLog struct {
	mu   sync.Mutex
	recs [][]uint32
}

func (l *trapLog) Read(_ uint64, b []byte) { clear(b) }

func (l *trapLog) Write(_ uint64, b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case len(b) == 1:
		l.recs = append(l.recs, []uint32{uint32(b[0])})
	case len(b) == 4 && len(l.recs) > 0:
		r := &l.recs[len(l.recs)-1]
		*r = append(*r, binary.LittleEndian.Uint32(b))
	}
}

func (l *trapLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.recs {
		fmt.Fprintf(&b, "[vector %d", r[0])
		q := func(i int) uint64 {
			if 2*i+2 < len(r) {
				return uint64(r[2*i+1]) | uint64(r[2*i+2])<<32
			}
			return 0
		}
		fmt.Fprintf(&b, " CR2 %#x stack %#x %#x %#x RSP %#x]", q(0), q(1), q(2), q(3), q(4))
	}
	return b.String()
}

// checkpoints is the PIO device at the wait and report ports.
type checkpoints struct{ h *hostileRun }

func (c checkpoints) Read(_ uint64, b []byte) { clear(b) }

func (c checkpoints) Write(off uint64, b []byte) {
	if len(b) != 4 {
		return
	}
	v := binary.LittleEndian.Uint32(b)
	h := c.h
	switch off {
	case 0:
		if v == hostileDone {
			h.doneOnce.Do(func() { close(h.done) })
			return
		}
		if int(v) < len(h.attacks) {
			h.waitAttack(h.attacks[v])
		}
	case hostileReportPort - hostileWaitPort:
		if i := int(v >> 16); i < len(h.attacks) {
			h.reportAttack(h.attacks[i], uint8(v))
		}
	}
}

// waitAttack runs an attack's host-side checks while the guest waits.
func (h *hostileRun) waitAttack(at *attack) {
	var errs []string
	defer func(start time.Time) { at.took = time.Since(start) }(time.Now())
	if at.check != nil {
		if err := at.check(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if d := at.dev; d != nil {
		switch at.want {
		case wantNeedsReset:
			if err := poll(d.id+" DEVICE_NEEDS_RESET", func() bool { return d.status()&virtio.StatusDeviceNeedsReset != 0 }); err != nil {
				errs = append(errs, fmt.Sprintf("%v (status %#x)", err, d.status()))
			}
		case wantHealthy:
			if s := d.status(); s&(virtio.StatusDriverOK|virtio.StatusDeviceNeedsReset) != virtio.StatusDriverOK {
				errs = append(errs, fmt.Sprintf("%s status %#x, want DRIVER_OK without NEEDS_RESET (last error: %v)", d.id, s, d.tr.Err()))
			}
		}
	}
	if err := h.alive(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		at.err = fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if at.dev == nil {
		h.logAttack(at, "")
	}
}

// reportAttack checks the status the guest read back and logs the attack.
func (h *hostileRun) reportAttack(at *attack, s uint8) {
	switch {
	case at.want == wantNeedsReset && s&virtio.StatusDeviceNeedsReset == 0:
		at.err = errors.Join(at.err, fmt.Errorf("the guest reads status %#x, without DEVICE_NEEDS_RESET", s))
	case at.want == wantHealthy && s&(virtio.StatusDriverOK|virtio.StatusDeviceNeedsReset) != virtio.StatusDriverOK:
		at.err = errors.Join(at.err, fmt.Errorf("the guest reads status %#x, want DRIVER_OK without NEEDS_RESET", s))
	}
	h.logAttack(at, fmt.Sprintf("guest reads status %#02x", s))
}

func (h *hostileRun) logAttack(at *attack, detail string) {
	took := time.Since(h.lastEnd)
	h.lastEnd = time.Now()
	if at.err != nil {
		h.errorf("hostile: %-38s FAIL: %v", at.name, at.err)
		return
	}
	h.t.Logf("hostile: %-38s ok   %-24s (%v, checks %v)", at.name, detail, took.Round(time.Millisecond), at.took.Round(time.Millisecond))
}

// rssKiB returns this process's resident set (VmRSS) in KiB.
func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func hostilePattern() []byte {
	p := make([]byte, hostilePatternLen)
	for i := range p {
		p[i] = byte(i*131 + i>>9)
	}
	return p
}

// TestHostileGuest boots the hostile guest once and runs every attack
// (hostile_*_test.go) against a machine with one device of each kind.
func TestHostileGuest(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{0xA5}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// The other machine: one vCPU counting, a pattern in its RAM.
	other, err := New(Config{CPUs: 1, MemoryMiB: 64, Flat: &Flat{Code: countingGuest(), Addr: flatAddr}, RNG: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pattern := hostilePattern()
	if _, err := other.Memory().WriteAt(pattern, hostilePatternAt); err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}

	tap := fmt.Sprintf("gvhst%d", os.Getpid()%100000)
	m, err := New(Config{
		CPUs: 2, MemoryMiB: 64, Flat: &Flat{Code: []byte{0xF4}, Addr: flatAddr}, DebugExit: true,
		Disks: []Disk{{Path: disk}}, Nets: []Net{{TAP: tap, MAC: "02:00:00:00:00:31"}},
		Vsock: &Vsock{CID: 3, UDS: filepath.Join(dir, "vsock")}, RNG: true, Balloon: true,
	})
	if err != nil {
		t.Fatalf("the attacked machine (TAP %s): %v", tap, err)
	}
	defer m.Close()
	h := &hostileRun{t: t, m: m, other: other, devs: map[string]*hdev{}, done: make(chan struct{}), diskPath: disk}
	for _, d := range m.devs.Devices() {
		h.devs[d.ID] = &hdev{id: d.ID, slot: d.Slot, bar: d.Transport.Config().BARAddress(pcitransport.BARIndex), tr: d.Transport}
	}
	for _, id := range []string{"vda", "net0", vsockID, rngID, balloonID} {
		if h.devs[id] == nil {
			t.Fatalf("no device %s: %v", id, m.devs.Devices())
		}
	}

	// vCPU 1 counts; vCPU 0 attacks.
	tables := h.a.catchAll(0x6000)
	toCounter := h.a.ifNotVCPU0()
	hostileQueueAttacks(h)
	hostileTransportAttacks(h)
	hostilePCIAttacks(h)
	hostileDeviceAttacks(h)
	// The VMM is saved below with a device broken by its guest.
	{
		rng := h.devs[rngID]
		q := h.queue(0, 8)
		h.desc(q.desc, 0, q.buf(0), 64, dWrite|dNext, 0)
		h.add("descriptor loop, left broken", rng, wantNeedsReset, func() {
			h.initDev(rng, rngFeatures, q)
			h.offer(rng, q, 0)
		}, nil)
	}
	h.a.out(hostileWaitPort, 4, hostileDone)
	h.a.spin()
	toCounter(len(h.a.b))
	h.a.count(hostileCounter)
	tables()
	if flatAddr+uint64(len(h.a.b)) > hostileAreaBase {
		t.Fatalf("the guest's code (%d bytes) runs into its queue areas", len(h.a.b))
	}
	if _, err := m.Memory().WriteAt(h.a.b, flatAddr); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.preloads {
		if _, err := m.Memory().WriteAt(p.data, int64(p.gpa)); err != nil {
			t.Fatalf("preload at %#x: %v", p.gpa, err)
		}
	}
	if err := m.RegisterPIO(hostileWaitPort, 8, checkpoints{h}); err != nil {
		t.Fatal(err)
	}
	traps := &trapLog{}
	if err := m.RegisterPIO(hostileTrapPort, 4, traps); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s := traps.String(); s != "" {
			t.Errorf("the guest took an exception or interrupt (RSP below 0x7000: vCPU 0, below 0x8000: vCPU 1): %s", s)
		}
	}()
	t.Logf("hostile guest: %d attacks, %d bytes of code, %d queue areas", len(h.attacks), len(h.a.b), h.nextArea)

	rss0 := rssKiB(t)
	start := time.Now()
	h.lastEnd = start
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.done:
	case <-m.Done():
		t.Fatalf("the attacked machine stopped: %+v", m.Wait())
	case <-time.After(10 * time.Minute):
		t.Fatal("the hostile guest did not finish its attacks in 10 minutes")
	}
	t.Logf("hostile guest: the attacks took %v", time.Since(start).Round(time.Millisecond))

	// The VMM still answers its control API: pause, save, resume, and the
	// guest runs on.
	if err := m.Pause(); err != nil {
		t.Fatalf("pause after the attacks: %v", err)
	}
	if _, err := m.SaveState(); err != nil {
		t.Errorf("save state after the attacks: %v", err)
	}
	if d := m.Disks(); len(d) != 1 || d[0].Name != "vda" {
		t.Errorf("disks after the attacks: %+v", d)
	}
	m.Resume()
	if err := h.alive(); err != nil {
		t.Errorf("after pause and resume: %v", err)
	}
	select {
	case <-m.Done():
		t.Fatalf("the attacked machine stopped: %+v", m.Wait())
	default:
	}
	// The other machine: still running, its memory as it was.
	got := make([]byte, hostilePatternLen)
	other.Memory().ReadAt(got, hostilePatternAt)
	if !bytes.Equal(got, pattern) {
		t.Error("the other machine's RAM changed under the attacks")
	}
	rss1 := rssKiB(t)
	t.Logf("VmRSS %d KiB before the attacks, %d KiB after", rss0, rss1)
	// Two 64 MiB guests are the whole budget: what the attacks may make
	// the VMM allocate is bounded well below that.
	if rss1-rss0 > 96<<10 {
		t.Errorf("VmRSS grew by %d KiB during the attacks", rss1-rss0)
	}
	m.Stop(Exit{Reason: ExitHost})
	other.Stop(Exit{Reason: ExitHost})
	m.Wait()
	other.Wait()
}
