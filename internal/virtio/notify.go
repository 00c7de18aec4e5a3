package virtio

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Notifier carries the driver's available buffer notifications ("kicks",
// 2.7.13, 4.1.4.4) for one virtqueue to the worker serving it. A kick
// wakes that worker and nothing else: with a doorbell (an ioeventfd the
// transport attached) the worker blocked in Wait reads it itself through
// Go's poller, where a forwarding goroutine and a channel would wake two
// goroutines per kick. Kicks that come another way (MMIO writes, tests)
// and wake-ups go through a channel that coalesces (capacity 1).
type Notifier struct {
	ch chan struct{}
	db atomic.Pointer[doorbell] // nil: no doorbell, kicks come through ch

	mu      sync.Mutex // orders the doorbell's read deadline and the flags
	paused  bool       // Pause: Wait stays off the doorbell until Resume
	forward bool       // C was called: every doorbell is forwarded to ch
}

// doorbell is one attached doorbell file.
type doorbell struct {
	r  io.ReadCloser
	dl deadliner // nil: cannot be interrupted, so always forwarded
	// forwarded: a goroutine reads r and kicks ch until r is closed
	// (guarded by Notifier.mu).
	forwarded bool
}

// deadliner is what an interruptible doorbell file (an *os.File in
// non-blocking mode) has: a read deadline that wakes a blocked Read.
type deadliner interface {
	SetReadDeadline(t time.Time) error
}

// past is a read deadline that makes a pending and every later Read of a
// doorbell return at once, until cleared.
var past = time.Unix(1, 0)

// NewNotifier returns a Notifier without a doorbell.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{}, 1)} }

// Kick notifies the queue from elsewhere than its doorbell (an MMIO
// write of a width the doorbell does not match, a test).
func (n *Notifier) Kick() {
	select {
	case n.ch <- struct{}{}:
	default:
	}
	// A worker may be blocked on the doorbell: interrupt its Read; it
	// finds the kick in ch before reading again.
	n.mu.Lock()
	if db := n.db.Load(); db != nil && !db.forwarded {
		_ = db.dl.SetReadDeadline(past)
	}
	n.mu.Unlock()
}

// Wait blocks until the queue is kicked (true) or stop is closed
// (false). Kicks coalesce: one return may stand for several, and a
// return may be spurious, so the caller re-checks the ring (2.7.10).
func (n *Notifier) Wait(stop <-chan struct{}) bool {
	var buf [8]byte
	for {
		select {
		case <-stop:
			return false
		case <-n.ch:
			return true
		default:
		}
		db := n.direct()
		if db == nil {
			select {
			case <-stop:
				return false
			case <-n.ch:
				return true
			}
		}
		_, err := db.r.Read(buf[:])
		switch {
		case err == nil:
			return true
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Interrupted by Kick (the kick is in ch) or Pause.
			n.rearm(db)
		case n.db.Load() == db:
			// The doorbell failed while still attached (a closed one
			// is detached first): wait for kicks through ch alone.
			select {
			case <-stop:
				return false
			case <-n.ch:
				return true
			}
		}
		// Otherwise the doorbell was detached or replaced: look again.
	}
}

// direct returns the doorbell Wait reads itself, or nil when it must
// wait on ch (no doorbell, a forwarded one, or paused).
func (n *Notifier) direct() *doorbell {
	n.mu.Lock()
	defer n.mu.Unlock()
	db := n.db.Load()
	if db == nil || db.forwarded || n.paused {
		return nil
	}
	return db
}

// rearm clears the read deadline Kick set, unless Pause wants it kept.
func (n *Notifier) rearm(db *doorbell) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.paused && !db.forwarded {
		_ = db.dl.SetReadDeadline(time.Time{})
	}
}

// C returns a channel that receives the queue's kicks, for a worker that
// also waits on other events (and so cannot block in Wait). From then on
// doorbells are forwarded to it by a goroutine (two wake-ups per kick:
// meant for queues the driver seldom kicks).
func (n *Notifier) C() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.forward {
		n.forward = true
		if db := n.db.Load(); db != nil {
			n.forwardLocked(db)
		}
	}
	return n.ch
}

// forwardLocked starts the goroutine that forwards db's kicks to ch.
func (n *Notifier) forwardLocked(db *doorbell) {
	if db.forwarded {
		return
	}
	if db.dl != nil {
		_ = db.dl.SetReadDeadline(time.Time{})
	}
	db.forwarded = true
	go forward(db.r, n.ch)
}

// forward reads kicks from r and passes them to ch until r is closed.
func forward(r io.Reader, ch chan struct{}) {
	var buf [8]byte
	for {
		if _, err := r.Read(buf[:]); err != nil {
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// SetDoorbell attaches r (nil: detaches the doorbell): each Read of r
// blocks until at least one kick and returns an 8-byte counter, and
// Close makes a blocked Read return. The caller closes a doorbell it
// detached or replaced. A worker waiting is woken (one spurious kick) to
// pick up the change.
func (n *Notifier) SetDoorbell(r io.ReadCloser) {
	n.mu.Lock()
	var db *doorbell
	if r != nil {
		db = &doorbell{r: r}
		// A doorbell Wait can interrupt (Kick, Pause) is read by the
		// worker itself; any other by a forwarding goroutine.
		if dl, ok := r.(deadliner); ok && dl.SetReadDeadline(time.Time{}) == nil {
			db.dl = dl
			if n.paused {
				_ = dl.SetReadDeadline(past)
			}
		}
		if db.dl == nil || n.forward {
			n.forwardLocked(db)
		}
	}
	n.db.Store(db)
	n.mu.Unlock()
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// Pause wakes a worker blocked in Wait and keeps Wait off the doorbell
// (waiting on stop and ch alone) until Resume: a transport calls it
// before it resets the device, whose Reset closes stop and then waits for
// the workers.
func (n *Notifier) Pause() {
	n.mu.Lock()
	n.paused = true
	if db := n.db.Load(); db != nil && !db.forwarded {
		_ = db.dl.SetReadDeadline(past)
	}
	n.mu.Unlock()
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// Resume undoes Pause, before the device's workers start again.
func (n *Notifier) Resume() {
	n.mu.Lock()
	n.paused = false
	if db := n.db.Load(); db != nil && !db.forwarded {
		_ = db.dl.SetReadDeadline(time.Time{})
	}
	n.mu.Unlock()
}

// Drain drops a kick waiting in the channel (a device reset forgets
// kicks, 2.4).
func (n *Notifier) Drain() {
	select {
	case <-n.ch:
	default:
	}
}
