package vmm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/fence"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// fencing is what stops a VMM's guest from outside its own life cycle:
// the watchdog the agent feeds, and the disk leases on shared storage.
// Either one firing stops the machine at once and ends the VMM with
// vmmconfig.ExitFenced.
type fencing struct {
	dog    *fence.Watchdog
	mu     sync.Mutex // guards leases
	leases []*disklease.Lease
	reason atomic.Pointer[string] // set once fenced
	stopM  func(reason string)    // stops the running machine, if any
	done   chan struct{}
}

// leaseOptions are the disk leases' timings (tests shorten them).
var leaseOptions = disklease.Options{}

func newFencing(stopM func(string)) *fencing {
	f := &fencing{stopM: stopM, done: make(chan struct{})}
	f.dog = fence.New(func(reason string) { f.fence("watchdog " + reason) })
	return f
}

// fence records why the VMM is fenced (the first reason wins) and stops
// the machine.
func (f *fencing) fence(reason string) {
	if f.reason.CompareAndSwap(nil, &reason) {
		f.stopM(reason)
	}
}

// fenced returns the error the VMM ends with once fenced, else nil.
func (f *fencing) fenced() error {
	r := f.reason.Load()
	if r == nil {
		return nil
	}
	return &ExitError{Code: ExitFenced, Err: fmt.Errorf("fenced: %s; the guest was stopped", *r)}
}

// fenceStartWait bounds how long a VMM started on a deadline that had
// already passed waits for the agent's first feed before it gives up,
// fenced, without having run its guest.
var fenceStartWait = 15 * time.Second

// awaitFeed waits until the watchdog is armed (fed through the API) and
// has not fired, for up to wait; else the VMM is fenced.
func (f *fencing) awaitFeed(wait time.Duration) error {
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if err := f.fenced(); err != nil {
			return err
		}
		if armed, _, fired, _ := f.dog.Status(); armed && !fired {
			return nil
		}
		if time.Now().After(deadline) {
			f.fence(fmt.Sprintf("the host's lease deadline had passed when the VMM started, and no feed came within %v", wait))
			return f.fenced()
		}
	}
}

// takeLeases takes the lease of every disk that asks for one, for owner
// ("HOST/VM"), before the guest may touch them.
func (f *fencing) takeLeases(owner string, disks []vmmconfig.Disk) error {
	var paths []string
	seen := map[string]disklease.Seen{}
	for _, d := range disks {
		paths = append(paths, d.Path)
		if s := d.LeaseSeen; s != nil && s.ForMS > 0 {
			seen[d.Path] = disklease.Seen{Sum: s.Sum, For: time.Duration(s.ForMS) * time.Millisecond}
		}
	}
	return f.hold(owner, paths, func(ctx context.Context, d string, o disklease.Owner) (*disklease.Lease, error) {
		return disklease.AcquireSeen(ctx, d, o, leaseOptions, seen[d])
	})
}

// adoptLeases takes over the leases a live migration's source handed to
// owner with nonce (shared storage), before the guest runs here.
func (f *fencing) adoptLeases(owner string, a *vmmconfig.AdoptLeases) error {
	if a == nil {
		return nil
	}
	return f.hold(owner, a.Disks, func(ctx context.Context, d string, o disklease.Owner) (*disklease.Lease, error) {
		l, err := disklease.Adopt(ctx, d, o, a.Nonce, leaseOptions)
		if err != nil {
			// A source that held no lease (started before its VM was
			// HA) handed none over: a free lease is claimed as at a start.
			if r, ierr := disklease.Inspect(d); ierr == nil && (r.Released || r.Owner == (disklease.Owner{})) {
				return disklease.Acquire(ctx, d, o, leaseOptions)
			}
		}
		return l, err
	})
}

// hold takes disks' leases with take and fences the VMM when one is lost.
// On error it holds none.
func (f *fencing) hold(owner string, disks []string, take func(context.Context, string, disklease.Owner) (*disklease.Lease, error)) error {
	if len(disks) == 0 {
		return nil
	}
	host, vmName, _ := strings.Cut(owner, "/")
	o := disklease.Owner{Host: host, VM: vmName}
	var got []*disklease.Lease
	for _, d := range disks {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		l, err := take(ctx, d, o)
		cancel()
		if err != nil {
			releaseAll(got)
			return err
		}
		got = append(got, l)
	}
	f.mu.Lock()
	f.leases = append(f.leases, got...)
	f.mu.Unlock()
	for _, l := range got {
		go func() {
			select {
			case <-l.Lost():
				f.fence(l.Err().Error())
			case <-f.done:
			}
		}()
	}
	return nil
}

// handOver gives every lease this VMM holds to the destination of a live
// migration (owner "HOST/VM", with nonce), at the handover. A lease left
// half-handed would be renewed by nobody: on error the guest is fenced
// (the migration fails, and this side must not resume on a lease it may
// no longer hold).
func (f *fencing) handOver(owner string, nonce uint64) error {
	host, vmName, ok := strings.Cut(owner, "/")
	if !ok || host == "" || vmName == "" {
		return fmt.Errorf("disk leases: hand over to %q: give HOST/VM", owner)
	}
	to := disklease.Owner{Host: host, VM: vmName}
	f.mu.Lock()
	ls := f.leases
	f.leases = nil
	f.mu.Unlock()
	for _, l := range ls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := l.Transfer(ctx, to, nonce)
		cancel()
		if err != nil {
			f.fence("handing the disk leases to " + to.String() + " failed: " + err.Error())
			return fmt.Errorf("disk leases: %w", err)
		}
	}
	return nil
}

// release gives the leases up (a guest that ended cleanly, or a VMM that
// never started it) and stops the watchdog.
func (f *fencing) release() {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	f.dog.Stop()
	f.mu.Lock()
	ls := f.leases
	f.leases = nil
	f.mu.Unlock()
	releaseAll(ls)
}

func releaseAll(ls []*disklease.Lease) {
	for _, l := range ls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Release(ctx)
		cancel()
	}
}

// stopMachine is fencing's way to stop m: at once, with the reason.
func stopMachine(m *vm.Machine, reason string) {
	m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "fenced: " + reason})
}
