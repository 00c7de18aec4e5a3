package vmm

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/fence"
	"github.com/govisor/govisor/internal/vm"
)

// fencing is what stops a VMM's guest from outside its own life cycle:
// the watchdog the agent feeds, and the disk leases on shared storage.
// Either one firing stops the machine at once and ends the VMM with
// vmmconfig.ExitFenced.
type fencing struct {
	dog    *fence.Watchdog
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

// takeLeases takes the lease of every disk that asks for one, for owner
// ("HOST/VM"), before the guest may touch them.
func (f *fencing) takeLeases(owner string, disks []string) error {
	if len(disks) == 0 {
		return nil
	}
	host, vmName, _ := strings.Cut(owner, "/")
	o := disklease.Owner{Host: host, VM: vmName}
	for _, d := range disks {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		l, err := disklease.Acquire(ctx, d, o, leaseOptions)
		cancel()
		if err != nil {
			f.release()
			return err
		}
		f.leases = append(f.leases, l)
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

// release gives the leases up (a guest that ended cleanly, or a VMM that
// never started it) and stops the watchdog.
func (f *fencing) release() {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	f.dog.Stop()
	for _, l := range f.leases {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Release(ctx)
		cancel()
	}
	f.leases = nil
}

// stopMachine is fencing's way to stop m: at once, with the reason.
func stopMachine(m *vm.Machine, reason string) {
	m.Stop(vm.Exit{Reason: vm.ExitHost, Detail: "fenced: " + reason})
}
