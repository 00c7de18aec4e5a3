package vm

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/seccomp"
)

// kickSignal interrupts KVM_RUN on a vCPU thread. The Go runtime must catch
// it (signal.Notify) rather than ignore it: an ignored signal is discarded
// before it can make KVM_RUN return EINTR.
const kickSignal = unix.SIGUSR2

var kickOnce sync.Once

func installKickHandler() {
	kickOnce.Do(func() {
		ch := make(chan os.Signal, 16)
		signal.Notify(ch, kickSignal)
		go func() {
			for range ch {
			}
		}()
	})
}

// vcpuRunner is one vCPU and the OS thread that runs it.
type vcpuRunner struct {
	m    *Machine
	c    *kvm.VCPU
	tid  int     // OS thread id, set once the thread is locked
	last exitLog // its last exits, told with a triple fault
}

// kick makes the vCPU leave KVM_RUN soon: immediate_exit covers the window
// before it enters the guest, the signal the time inside it.
func (r *vcpuRunner) kick() {
	r.c.SetImmediateExit(true)
	r.m.mu.Lock()
	tid := r.tid
	r.m.mu.Unlock()
	signalThread(tid)
}

// signalThread interrupts a vCPU thread's KVM_RUN (0: not started).
func signalThread(tid int) {
	if tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), tid, kickSignal)
	}
}

// loop runs the vCPU on a dedicated OS thread until the machine stops.
func (r *vcpuRunner) loop(start func() error) {
	runtime.LockOSThread()
	filtered := false
	defer func() {
		// A thread under the vCPU filter must never run another
		// goroutine: ending locked, the goroutine takes it along.
		if !filtered {
			runtime.UnlockOSThread()
		}
	}()
	m := r.m
	m.mu.Lock()
	r.tid = unix.Gettid()
	m.mu.Unlock()
	if start != nil {
		if err := start(); err != nil {
			m.stop(Exit{Reason: ExitError, Err: fmt.Errorf("vCPU %d: %w", r.c.ID, err)})
			m.vcpuDone()
			return
		}
	}
	// The vCPU thread's own seccomp filter, tighter than the process's
	// (issue 15), before the guest runs its first instruction here.
	var err error
	if filtered, err = seccomp.InstallVCPU(); err != nil {
		m.stop(Exit{Reason: ExitError, Err: fmt.Errorf("vCPU %d: %w", r.c.ID, err)})
		m.vcpuDone()
		return
	}
	// pending: the last exit's instruction (an IN/OUT or MMIO access user
	// space has just served) is finished by KVM only on the next KVM_RUN.
	pending := false
	for {
		switch m.waitRunnable(pending) {
		case runStop:
			m.vcpuDone()
			return
		case runComplete:
			pending = r.completePending()
			continue
		}
		err := r.c.Run()
		pending = false
		if errors.Is(err, kvm.ErrInterrupted) {
			r.c.SetImmediateExit(false)
			continue
		}
		if err != nil {
			m.stop(Exit{Reason: ExitError, Err: err})
			continue
		}
		r.countExit()
		if ex, done := r.handleExit(); done {
			m.stop(ex)
		} else {
			pending = kvm.ExitNeedsCompletion(r.c.ExitReason())
		}
	}
}

func (r *vcpuRunner) countExit() {
	m := r.m
	m.countExit(r.c.ID, r.c.ExitReason())
	if m.exits[r.c.ID].Add(1) == 1 && m.firstExit.Load() == 0 {
		m.firstExit.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// completePending lets KVM finish the instruction behind the exit just
// served, before the vCPU parks for a pause: until then its registers still
// point at the IN/OUT or MMIO access (and an IN has not got its data), so a
// snapshot or migration would run it again on restore (api.rst, the NOTE
// under KVM_EXIT_MMIO, and immediate_exit). KVM_RUN with immediate_exit set
// completes it and returns EINTR without running further guest code.
// Completing can exit to user space once more (the next piece of a split
// MMIO access); it reports whether that exit left another operation pending.
func (r *vcpuRunner) completePending() bool {
	r.c.SetImmediateExit(true)
	err := r.c.Run()
	// Clearing cannot lose a kick: whoever kicks has set pauseReq or
	// stopping first, and waitRunnable looks at those next.
	r.c.SetImmediateExit(false)
	if errors.Is(err, kvm.ErrInterrupted) {
		return false // the success case: completed, nothing more run
	}
	if err != nil {
		r.m.stop(Exit{Reason: ExitError, Err: err})
		return false
	}
	r.countExit()
	if ex, done := r.handleExit(); done {
		r.m.stop(ex)
		return false
	}
	return kvm.ExitNeedsCompletion(r.c.ExitReason())
}

// handleExit services one KVM exit; done reports that the machine must stop.
func (r *vcpuRunner) handleExit() (Exit, bool) {
	m := r.m
	reason := r.c.ExitReason()
	if reason != kvm.ExitIO && reason != kvm.ExitMMIO {
		r.last.add(exitRec{reason: reason})
	}
	switch reason {
	case kvm.ExitIO:
		io, ok := r.c.IO()
		if !ok {
			return r.fatal("KVM gave a port-I/O buffer outside kvm_run"), true
		}
		r.last.add(exitRec{reason: reason, addr: uint64(io.Port), size: uint8(io.Size), write: io.Out})
		for i := 0; i < io.Count; i++ {
			d := io.Data[i*io.Size : (i+1)*io.Size]
			if io.Out {
				m.pio.Write(uint64(io.Port), d)
			} else {
				m.pio.Read(uint64(io.Port), d)
			}
		}
	case kvm.ExitMMIO:
		mm := r.c.MMIO()
		r.last.add(exitRec{reason: reason, addr: mm.Addr, size: uint8(len(mm.Data)), write: mm.Write})
		if mm.Write {
			m.mmio.Write(mm.Addr, mm.Data)
		} else {
			m.mmio.Read(mm.Addr, mm.Data)
		}
	case kvm.ExitHLT:
		return Exit{Reason: ExitHalt}, true
	case kvm.ExitShutdown:
		// A triple fault: what Linux falls back to for reboot, and what a
		// crashed guest does. Either way the machine resets.
		return Exit{Reason: ExitReset, Detail: fmt.Sprintf("triple fault (KVM_EXIT_SHUTDOWN) on vCPU %d; its last exits before: %s", r.c.ID, &r.last)}, true
	case kvm.ExitSystemEvent:
		switch r.c.SystemEvent() {
		case kvm.SystemEventShutdown:
			return Exit{Reason: ExitPowerOff}, true
		case kvm.SystemEventReset:
			return Exit{Reason: ExitReset, Detail: "system reset event"}, true
		default:
			return r.fatal(fmt.Sprintf("system event %d", r.c.SystemEvent())), true
		}
	case kvm.ExitInternalError:
		ie := r.c.Internal()
		if ie.Suberror == kvm.InternalErrorEmulation {
			handled, err := r.emulateFailed(ie)
			if handled {
				return Exit{}, false
			}
			return r.fatal(fmt.Sprintf("KVM internal error: emulation failure: %v", err)), true
		}
		return r.fatal(fmt.Sprintf("KVM internal error: suberror %d data %x", ie.Suberror, ie.Data)), true
	case kvm.ExitFailEntry:
		return r.fatal(fmt.Sprintf("KVM entry failure: hardware reason %#x", r.c.FailEntry())), true
	case kvm.ExitIntr, kvm.ExitIRQWindowOpen:
	default:
		return r.fatal(fmt.Sprintf("unexpected KVM exit reason %d", reason)), true
	}
	return Exit{}, false
}

// fatal builds an error exit that carries the guest's registers.
func (r *vcpuRunner) fatal(what string) Exit {
	return Exit{Reason: ExitError, Err: fmt.Errorf("vCPU %d: %s\n%s", r.c.ID, what, r.dumpState())}
}

// What a vCPU runner does next (waitRunnable).
type runnable int

const (
	runGuest    runnable = iota // enter the guest
	runComplete                 // complete the pending operation, then ask again
	runStop                     // the machine stops
)

// waitRunnable blocks while the machine is paused. pending says the last
// exit's operation awaits completion by KVM_RUN: a runner parks only once
// it is complete, so that a paused vCPU's saved state is consistent.
func (m *Machine) waitRunnable(pending bool) runnable {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.stopping {
			return runStop
		}
		if !m.pauseReq {
			return runGuest
		}
		if pending {
			return runComplete
		}
		m.parked++
		m.cond.Broadcast()
		for m.pauseReq && !m.stopping {
			m.cond.Wait()
		}
		m.parked--
	}
}

func (m *Machine) vcpuDone() {
	m.mu.Lock()
	m.running--
	m.cond.Broadcast()
	m.mu.Unlock()
}

// stop records the first exit reason and makes every vCPU leave the guest.
func (m *Machine) stop(ex Exit) {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return
	}
	m.stopping = true
	m.exit = ex
	// Kick before the broadcast: a parked runner that sees stopping exits,
	// the machine is then done and may be closed, vCPUs unmapped and all,
	// while a kick after the unlock would still write to its kvm_run.
	tids := make([]int, 0, len(m.runners))
	for _, r := range m.runners {
		r.c.SetImmediateExit(true)
		tids = append(tids, r.tid)
	}
	m.cond.Broadcast()
	m.mu.Unlock()
	for _, tid := range tids {
		signalThread(tid)
	}
}

// Pause stops every vCPU outside KVM_RUN and returns once all are parked.
func (m *Machine) Pause() error {
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return ErrStopped
	}
	m.pauseReq = true
	m.mu.Unlock()
	for _, r := range m.runners {
		r.kick()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.parked < m.running && !m.stopping {
		m.cond.Wait()
	}
	if m.stopping {
		return ErrStopped
	}
	// Stop device I/O too, so that neither guest memory nor disks change
	// while paused: snapshots and migration handovers see one instant.
	m.devs.Quiesce()
	if m.rtc != nil {
		m.rtc.Pause()
	}
	return nil
}

// Resume lets paused vCPUs and devices run again.
func (m *Machine) Resume() {
	if m.rtc != nil {
		m.rtc.Resume()
	}
	m.devs.Unquiesce()
	m.mu.Lock()
	m.pauseReq = false
	m.cond.Broadcast()
	m.mu.Unlock()
}

// Stop ends the machine from the host side (as a power cut would).
func (m *Machine) Stop(ex Exit) { m.stop(ex) }
