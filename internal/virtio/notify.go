package virtio

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Notifier carries the driver's available buffer notifications ("kicks",
// 2.7.13, 4.1.4.4) for one virtqueue to the worker serving it. A kick
// wakes that worker and nothing else: with a doorbell (an ioeventfd the
// transport attached) the worker blocked in Wait sleeps in poll(2) on the
// doorbell itself, as a QEMU I/O thread does, where a forwarding
// goroutine and a channel would wake two goroutines (and the Go
// scheduler's poller) per kick. Kicks that come another way (MMIO writes,
// tests) go through a channel that coalesces (capacity 1).
type Notifier struct {
	ch chan struct{}
	db atomic.Pointer[doorbell] // nil: no doorbell, kicks come through ch

	mu      sync.Mutex // orders the flags with attaching doorbells
	paused  bool       // Pause: Wait stays off the doorbell until Resume
	forward bool       // C was called: every doorbell is forwarded to ch
}

// NewNotifier returns a Notifier without a doorbell.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{}, 1)} }

// Kick notifies the queue from elsewhere than its doorbell (an MMIO
// write of a width the doorbell does not match, a test).
func (n *Notifier) Kick() {
	n.signal()
	// A worker may be asleep on the doorbell: it finds the kick in ch
	// when it wakes.
	if db := n.db.Load(); db != nil {
		db.wakeUp()
	}
}

// signal puts a kick (or a wake-up) in ch.
func (n *Notifier) signal() {
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// Wait blocks until the queue is kicked (true) or stop is closed
// (false). Kicks coalesce: one return may stand for several, and a
// return may be spurious, so the caller re-checks the ring (2.7.10).
func (n *Notifier) Wait(stop <-chan struct{}) bool {
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
		kicked, err := db.wait()
		switch {
		case kicked:
			return true
		case err == nil || errors.Is(err, errDetached):
			// Woken (Kick, Pause, the doorbell detached): look again.
		default:
			// The doorbell failed while still attached: wait for kicks
			// through ch alone.
			select {
			case <-stop:
				return false
			case <-n.ch:
				return true
			}
		}
	}
}

// direct returns the doorbell Wait sleeps on itself, or nil when it must
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

// C returns a channel that receives the queue's kicks, for a worker that
// also waits on other events (and so cannot block in Wait). From then on
// doorbells are forwarded to it by a goroutine (two wake-ups per kick:
// meant for queues the driver seldom kicks).
func (n *Notifier) C() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.forward {
		n.forward = true
		if db := n.db.Load(); db != nil && !db.forwarded {
			db.forwarded = true
			db.wakeUp() // off the doorbell before the forwarder reads it
			go db.forward(n.ch)
		}
	}
	return n.ch
}

// SetDoorbell attaches r (nil: detaches the doorbell): each Read of r
// blocks until at least one kick and returns an 8-byte counter. With a
// descriptor (syscall.Conn), best an eventfd in blocking mode (outside
// Go's poller, which would wake on every kick too), the worker sleeps on
// it itself; otherwise a goroutine forwards it, which r's Close or, for
// an eventfd, a write must wake. The caller closes a doorbell it
// detached or replaced, after SetDoorbell returns (no worker sleeps on it
// then). A waiting worker is woken (one spurious kick) to pick up the
// change.
func (n *Notifier) SetDoorbell(r io.ReadCloser) {
	var db *doorbell
	if r != nil {
		var err error
		if db, err = newDoorbell(r); err != nil {
			// Not pollable here (or no wake-up eventfd): a goroutine
			// reads it instead.
			db = &doorbell{r: r}
		}
	}
	n.mu.Lock()
	if db != nil && (db.wake == nil || n.forward) {
		db.forwarded = true
		go db.forward(n.ch)
	}
	old := n.db.Swap(db)
	n.mu.Unlock()
	if old != nil {
		old.detach()
	}
	n.signal()
}

// Pause wakes a worker blocked in Wait and keeps Wait off the doorbell
// (waiting on stop and ch alone) until Resume: a transport calls it
// before it resets the device, whose Reset closes stop and then waits for
// the workers.
func (n *Notifier) Pause() {
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	n.signal()
	if db := n.db.Load(); db != nil {
		db.wakeUp()
	}
}

// Resume undoes Pause, before the device's workers start again. Kicks
// that came through the doorbell meanwhile are still counted there.
func (n *Notifier) Resume() {
	n.mu.Lock()
	n.paused = false
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
