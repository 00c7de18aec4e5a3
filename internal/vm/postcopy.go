package vm

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/guestmem"
	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/uffd"
)

// ErrPostCopyFailed is wrapped by the exit error of a machine whose
// post-copy migration ended before all of its memory arrived.
var ErrPostCopyFailed = errors.New("vm: post-copy failed")

// ErrPostCopyRunning is returned for a snapshot or migration of a machine
// whose memory is still (or was never fully) copied in by post-copy.
var ErrPostCopyRunning = errors.New("vm: a post-copy migration is still bringing this machine's memory over")

var _ migration.PostCopyDestination = (*migrationDest)(nil)

// postCopy is the destination's side of post-copy: guest RAM registered
// with a userfaultfd in missing mode (Documentation/admin-guide/mm/
// userfaultfd.rst), so that every access to a page not yet arrived, by a
// vCPU through KVM or by the VMM's own threads, waits for PlacePage.
type postCopy struct {
	m       *Machine
	u       *uffd.FD
	regions []pcRegion
	request func(gpa uint64)
	done    chan struct{} // closed when serve returns

	mu     sync.Mutex
	left   int           // pages still missing
	failed bool          // EndPostCopy(err) began
	ended  bool          // EndPostCopy was called
	stuck  chan struct{} // closed when, after failure, something waits on a missing page
}

// pcRegion is one RAM region under post-copy.
type pcRegion struct {
	gpa       uint64
	host      []byte
	base      uintptr  // host address of host[0]
	missing   []uint64 // bit p: page p has not arrived yet
	requested []uint64 // bit p: request was called for page p
}

func pcBit(bm []uint64, p uint64) bool { return bm[p/64]&(1<<(p%64)) != 0 }
func pcSet(bm []uint64, p uint64)      { bm[p/64] |= 1 << (p % 64) }
func pcClear(bm []uint64, p uint64)    { bm[p/64] &^= 1 << (p % 64) }

// ArmPostCopy drops the stale copies of the missing pages and makes every
// access to them wait for PlacePage (migration.PostCopyDestination). The
// machine refuses snapshots and migrations until EndPostCopy(nil).
func (d *migrationDest) ArmPostCopy(missing [][]uint64, request func(gpa uint64)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || !d.committed {
		return errors.New("vm: post-copy armed before the device state was committed")
	}
	if d.pc != nil {
		return errors.New("vm: post-copy armed twice")
	}
	m := d.m
	regs := m.mem.Regions()
	if len(missing) != len(regs) {
		return fmt.Errorf("vm: post-copy: %d missing-page bitmaps for %d RAM regions", len(missing), len(regs))
	}
	pc := &postCopy{m: m, request: request, done: make(chan struct{}), stuck: make(chan struct{})}
	for i, r := range regs {
		pages := uint64(len(r.Host)) / guestmem.PageSize
		bm := missing[i]
		if uint64(len(bm)) != (pages+63)/64 {
			return fmt.Errorf("vm: post-copy: region %#x has %d pages, its bitmap %d words", r.GPA, pages, len(bm))
		}
		if pages%64 != 0 && bm[len(bm)-1]>>(pages%64) != 0 {
			return fmt.Errorf("vm: post-copy: bitmap names pages past the region at %#x", r.GPA)
		}
		for _, w := range bm {
			pc.left += bits.OnesCount64(w)
		}
		pc.regions = append(pc.regions, pcRegion{gpa: r.GPA, host: r.Host, base: uffd.Addr(r.Host),
			missing: append([]uint64(nil), bm...), requested: make([]uint64, len(bm))})
	}
	u, err := uffd.Open()
	if err != nil {
		return fmt.Errorf("vm: post-copy: %w", err)
	}
	pc.u = u
	holdRuntime()
	// Register before dropping: from then on nothing can repopulate a
	// dropped page behind the handler's back. Pages arrive 4 KiB at a time,
	// so the regions are taken off transparent huge pages meanwhile, as
	// QEMU's post-copy does: no huge-page fault path sits between a missing
	// page and its handler.
	for _, r := range pc.regions {
		unix.Madvise(r.host, unix.MADV_NOHUGEPAGE)
		if err := u.Register(r.host); err != nil {
			u.Close()
			releaseRuntime()
			return fmt.Errorf("vm: post-copy: %w", err)
		}
	}
	for _, r := range pc.regions {
		if err := dropPages(r.host, r.missing); err != nil {
			u.Close()
			releaseRuntime()
			return err
		}
	}
	go pc.serve()
	m.setPostCopy()
	d.pc = pc
	return nil
}

// dropPages discards the pages set in bm, a run of them per madvise: on
// anonymous memory MADV_DONTNEED leaves them unpopulated, so that the next
// access is a missing-page fault.
func dropPages(host []byte, bm []uint64) error {
	pages := uint64(len(host)) / guestmem.PageSize
	for p := uint64(0); p < pages; {
		if !pcBit(bm, p) {
			p++
			continue
		}
		end := p + 1
		for end < pages && pcBit(bm, end) {
			end++
		}
		if err := unix.Madvise(host[p*guestmem.PageSize:end*guestmem.PageSize], unix.MADV_DONTNEED); err != nil {
			return fmt.Errorf("vm: post-copy: drop pages %d-%d: %w", p, end-1, err)
		}
		p = end
	}
	return nil
}

// locate maps a host address to its region and page.
func (pc *postCopy) locate(addr uintptr) (int, uint64, bool) {
	for i, r := range pc.regions {
		if addr >= r.base && addr-r.base < uintptr(len(r.host)) {
			return i, uint64(addr-r.base) / guestmem.PageSize, true
		}
	}
	return 0, 0, false
}

// page returns the host bytes of page p of region i.
func (pc *postCopy) page(i int, p uint64) []byte {
	return pc.regions[i].host[p*guestmem.PageSize : (p+1)*guestmem.PageSize]
}

// serve handles faults until the userfaultfd is closed.
func (pc *postCopy) serve() {
	defer close(pc.done)
	for {
		f, err := pc.u.ReadFault()
		if errors.Is(err, uffd.ErrClosed) {
			return
		}
		if err != nil {
			// Nothing would resolve faults any more: the VM cannot go on.
			pc.m.stop(Exit{Reason: ExitError, Detail: "post-copy failed", Err: fmt.Errorf("%w: %w", ErrPostCopyFailed, err)})
			return
		}
		pc.fault(f)
	}
}

// fault resolves one fault: a page still missing is asked for (once) and
// left waiting for PlacePage; any other page was never written on the
// source (a fresh, zero page) or was placed since (then it is there, and
// ZeroPage just wakes the waiter).
//
// A fault can be handled well after its thread took it: the handler may
// have read it while its page was missing and then waited for pc.mu while
// PlacePage installed the page (which woke the thread), and the last page
// may have come meanwhile. So ZeroPage runs under pc.mu, as PlacePage's
// Copy does, and not once EndPostCopy(nil) has begun: that unregisters
// guest RAM (waking every waiter, whose access is then an ordinary one),
// and UFFDIO_ZEROPAGE on a range no longer registered fails with ENOENT,
// which must not be taken for a failure of post-copy.
func (pc *postCopy) fault(f uffd.Fault) {
	i, p, ok := pc.locate(f.Addr)
	if !ok {
		return // only guest RAM is registered
	}
	r := &pc.regions[i]
	gpa := r.gpa + p*guestmem.PageSize
	pc.mu.Lock()
	if pcBit(r.missing, p) {
		if pc.failed {
			pc.markStuck()
			pc.mu.Unlock()
			return
		}
		first := !pcBit(r.requested, p)
		pcSet(r.requested, p)
		pc.mu.Unlock()
		if first {
			pc.request(gpa)
		}
		return
	}
	if pc.ended && !pc.failed {
		pc.mu.Unlock()
		return // a stale fault: guest RAM is (being) unregistered
	}
	// After a failure the range stays registered until release closes the
	// userfaultfd (then ZeroPage reports ErrClosed): resolve the page.
	_, err := pc.u.ZeroPage(pc.page(i, p))
	pc.mu.Unlock()
	if err != nil && !errors.Is(err, uffd.ErrClosed) {
		pc.m.stop(Exit{Reason: ExitError, Detail: "post-copy failed", Err: fmt.Errorf("%w: %w", ErrPostCopyFailed, err)})
	}
}

// markStuck records that something waits on a page that will never come.
// Called with pc.mu held.
func (pc *postCopy) markStuck() {
	select {
	case <-pc.stuck:
	default:
		close(pc.stuck)
	}
}

// PlacePage installs missing page gpa and wakes whatever waits on it
// (migration.PostCopyDestination); a page that arrived before is left alone.
func (d *migrationDest) PlacePage(gpa uint64, p []byte) error {
	d.mu.Lock()
	pc := d.pc
	d.mu.Unlock()
	if pc == nil {
		return errors.New("vm: page placed before post-copy was armed")
	}
	if len(p) != guestmem.PageSize || gpa%guestmem.PageSize != 0 {
		return fmt.Errorf("vm: post-copy page %#x of %d bytes is not one aligned page", gpa, len(p))
	}
	i, pg, ok := -1, uint64(0), false
	for j, r := range pc.regions {
		if gpa >= r.gpa && gpa-r.gpa < uint64(len(r.host)) {
			i, pg, ok = j, (gpa-r.gpa)/guestmem.PageSize, true
		}
	}
	if !ok {
		return fmt.Errorf("vm: post-copy page %#x is outside guest RAM", gpa)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.ended {
		return errors.New("vm: page placed after post-copy ended")
	}
	r := &pc.regions[i]
	if !pcBit(r.missing, pg) {
		return nil
	}
	placed, err := pc.u.Copy(pc.page(i, pg), p)
	if err != nil {
		return fmt.Errorf("vm: post-copy: place page %#x: %w", gpa, err)
	}
	if !placed {
		// Only the handler populates registered pages, and never a
		// missing one: something else wrote guest memory.
		return fmt.Errorf("vm: post-copy: page %#x was populated before it arrived", gpa)
	}
	pcClear(r.missing, pg)
	pc.left--
	return nil
}

// EndPostCopy ends post-copy (migration.PostCopyDestination). With nil, and
// every page placed, guest RAM becomes ordinary memory. Otherwise the
// machine stops with an error exit wrapping ErrPostCopyFailed, and the
// faults still waiting are released (closing the userfaultfd resolves them
// with zero pages) only once the vCPUs are told to stop and the devices
// are quiesced, so that nothing runs on the pages that never came. When
// something waits on such a page, EndPostCopy does not wait for the
// devices: a device worker may be the one waiting, and would wait forever.
// It then stays blocked until the process ends, never acting on zeros (a
// disk write of them, say), and so does the userfaultfd.
func (d *migrationDest) EndPostCopy(err error) {
	d.mu.Lock()
	pc := d.pc
	d.mu.Unlock()
	if pc == nil {
		return
	}
	pc.mu.Lock()
	if pc.ended {
		pc.mu.Unlock()
		return
	}
	if err == nil && pc.left > 0 {
		err = fmt.Errorf("%d pages never arrived", pc.left)
	}
	pc.ended = true
	if err == nil {
		pc.mu.Unlock()
		pc.disarm()
		pc.release()
		pc.m.clearPostCopy()
		return
	}
	pc.failed = true
	for _, r := range pc.regions {
		for w := range r.missing {
			if r.missing[w]&r.requested[w] != 0 {
				pc.markStuck() // asked for, never placed: someone waits on it
			}
		}
	}
	pc.mu.Unlock()
	m := pc.m
	m.stop(Exit{Reason: ExitError, Detail: "post-copy failed: " + err.Error(), Err: fmt.Errorf("%w: %w", ErrPostCopyFailed, err)})
	devs := m.devs
	quiesced := make(chan struct{})
	go func() {
		devs.Quiesce()
		close(quiesced)
	}()
	select {
	case <-quiesced:
		pc.release()
		return
	case <-pc.stuck:
	}
	select {
	case <-quiesced:
		pc.release()
	default:
		go func() { <-quiesced; pc.release() }()
	}
}

// disarm makes guest RAM ordinary memory again once every page is in,
// after EndPostCopy(nil) set pc.ended: unregistering wakes whatever still
// waits in it (a fault the handler has not resolved yet, see fault).
func (pc *postCopy) disarm() {
	for _, r := range pc.regions {
		pc.u.Unregister(r.host) // Close unregisters too; this is the orderly way
		unix.Madvise(r.host, unix.MADV_HUGEPAGE)
	}
}

// release closes the userfaultfd, which wakes every waiting fault, and
// waits for the handler to return.
func (pc *postCopy) release() {
	pc.u.Close()
	<-pc.done
	releaseRuntime() // nothing can wait on a missing page any more
}

func (m *Machine) setPostCopy()   { m.postCopyOn.Store(true) }
func (m *Machine) clearPostCopy() { m.postCopyOn.Store(false) }

// postCopyBusy refuses what needs all of the machine's memory (a snapshot,
// a migration) while post-copy runs, or after it failed.
func (m *Machine) postCopyBusy(what string) error {
	if m.postCopyOn.Load() {
		return fmt.Errorf("%w: %s refused; wait for the migration to finish", ErrPostCopyRunning, what)
	}
	return nil
}
