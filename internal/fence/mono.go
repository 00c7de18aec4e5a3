package fence

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// MonoNow is CLOCK_MONOTONIC in nanoseconds: one clock for every process
// of a host, so that a deadline an agent computes is the same moment in
// the VMM that receives it, however late the message arrives.
func MonoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux; never reached.
		return time.Now().UnixNano()
	}
	return ts.Nano()
}

// MonoDeadline is the CLOCK_MONOTONIC time d from now.
func MonoDeadline(d time.Duration) int64 { return MonoNow() + int64(d) }

// FeedUntil feeds the watchdog up to deadline, CLOCK_MONOTONIC nanoseconds
// (see MonoNow): a feed that arrives late cannot move the deadline past
// what its sender meant, and one that arrives after it fires the watchdog
// at once.
func (w *Watchdog) FeedUntil(deadline int64) error {
	if deadline <= 0 {
		return errors.New("fence: a deadline must be a CLOCK_MONOTONIC time (0 is none)")
	}
	ttl := time.Duration(deadline - MonoNow())
	if ttl > MaxTTL {
		return fmt.Errorf("fence: deadline %v from now: at most %v", ttl, MaxTTL)
	}
	return w.Feed(max(ttl, time.Nanosecond)) // passed: fire now, never disarm
}
