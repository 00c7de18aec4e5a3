// Package fence is a VMM's self-fencing watchdog. The host agent feeds it
// while it can confirm the host's lease in etcd; a VMM whose watchdog is
// not fed in time stops its guest, so a host cut off from the cluster (or
// whose agent hangs) never keeps running a VM that other hosts are about
// to restart. This is Proxmox ha-manager's watchdog idea at the level of
// one VMM: no host reset, and only the VMs that HA may move are armed.
//
// Safety rests on one inequality the agent keeps: it feeds a deadline no
// later than when its etcd lease was last confirmed plus the lease's TTL
// minus a margin, so the watchdog fires before etcd expires the lease and
// the other hosts decide to restart the VM.
package fence

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// MaxTTL bounds one feeding: an agent that wants longer is misconfigured.
const MaxTTL = 10 * time.Minute

// Watchdog fires once when it is armed and not fed in time.
type Watchdog struct {
	mu       sync.Mutex
	deadline time.Time // monotonic
	timer    *time.Timer
	fired    bool
	reason   string
	fire     func(reason string)
}

// New makes a disarmed watchdog that calls fire (once, from its own
// goroutine) when a deadline passes.
func New(fire func(reason string)) *Watchdog {
	return &Watchdog{fire: fire}
}

// ErrFired is returned by Feed after the watchdog has fired: a fenced VMM
// stays fenced.
var ErrFired = errors.New("fence: the watchdog already fired; the guest was stopped")

// Feed arms the watchdog, or moves its deadline, to ttl from now. A ttl of
// zero disarms it (the VM is no longer HA, or the agent stops it itself).
func (w *Watchdog) Feed(ttl time.Duration) error {
	if ttl < 0 || ttl > MaxTTL {
		return fmt.Errorf("fence: ttl %v: give 0 (disarm) to %v", ttl, MaxTTL)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired {
		return ErrFired
	}
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if ttl == 0 {
		w.deadline = time.Time{}
		return nil
	}
	w.deadline = time.Now().Add(ttl)
	fedTTL := ttl
	w.timer = time.AfterFunc(ttl, func() { w.expire(fedTTL) })
	return nil
}

func (w *Watchdog) expire(ttl time.Duration) {
	w.mu.Lock()
	// A Feed that raced with this timer moved the deadline: not yet.
	if w.fired || w.deadline.IsZero() || time.Now().Before(w.deadline) {
		w.mu.Unlock()
		return
	}
	w.fired = true
	w.reason = fmt.Sprintf("not fed for %v: this host's lease could not be confirmed in time, so other hosts may restart the VM", ttl)
	reason := w.reason
	w.mu.Unlock()
	w.fire(reason)
}

// Status says whether the watchdog is armed, how long remains, and whether
// (and why) it fired.
func (w *Watchdog) Status() (armed bool, remaining time.Duration, fired bool, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.deadline.IsZero() && !w.fired {
		armed, remaining = true, max(time.Until(w.deadline), 0)
	}
	return armed, remaining, w.fired, w.reason
}

// Stop disarms the watchdog for good (the VMM is ending).
func (w *Watchdog) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.deadline = time.Time{}
}
