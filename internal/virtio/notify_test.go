package virtio_test

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/virtio"
)

// bell is a doorbell made of a pipe, as pcitest's platform makes them.
func bell(t *testing.T) (*os.File, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, func() {
		if _, err := w.Write(make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
	}
}

// waiter runs Wait in a loop on its own goroutine and reports each
// return on the channel it returns.
func waiter(n *virtio.Notifier, stop <-chan struct{}) <-chan bool {
	res := make(chan bool, 16)
	go func() {
		for {
			ok := n.Wait(stop)
			res <- ok
			if !ok {
				return
			}
		}
	}()
	return res
}

func expect(t *testing.T, res <-chan bool, want bool, what string) {
	t.Helper()
	select {
	case got := <-res:
		if got != want {
			t.Fatalf("%s: Wait returned %v", what, got)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Wait did not return", what)
	}
}

func quiet(t *testing.T, res <-chan bool, what string) {
	t.Helper()
	select {
	case got := <-res:
		t.Fatalf("%s: Wait returned %v", what, got)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestNotifierDoorbell(t *testing.T) {
	n := virtio.NewNotifier()
	r, ring := bell(t)
	n.SetDoorbell(r)
	stop := make(chan struct{})
	res := waiter(n, stop)
	expect(t, res, true, "wake-up on attach")
	quiet(t, res, "no kick")
	for i := range 3 {
		ring()
		expect(t, res, true, "doorbell kick")
		quiet(t, res, "after doorbell kick")
		// A kick from elsewhere interrupts the worker's read.
		n.Kick()
		expect(t, res, true, "MMIO kick")
		quiet(t, res, "after MMIO kick "+string(rune('0'+i)))
	}
	// The worker is blocked on the doorbell, where a closed stop alone
	// does not reach it: Pause does (with one spurious kick, or none if
	// Wait sees stop first).
	close(stop)
	n.Pause()
	stopped(t, res)
}

// stopped expects Wait to return false, after at most one true.
func stopped(t *testing.T, res <-chan bool) {
	t.Helper()
	for range 2 {
		select {
		case ok := <-res:
			if !ok {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return")
		}
	}
	t.Fatal("Wait returned true twice after stop")
}

func TestNotifierPause(t *testing.T) {
	n := virtio.NewNotifier()
	r, ring := bell(t)
	n.SetDoorbell(r)
	n.Drain()
	stop := make(chan struct{})
	res := waiter(n, stop)
	quiet(t, res, "no kick")
	// What the transport does around a device reset: Pause wakes the
	// worker (one spurious kick) and keeps it off the doorbell, where
	// the closed stop finds it.
	n.Pause()
	expect(t, res, true, "pause")
	ring() // not read while paused
	quiet(t, res, "doorbell while paused")
	close(stop)
	expect(t, res, false, "stop")
	// The kick that came while paused is read after Resume.
	n.Resume()
	n.Drain()
	res = waiter(n, make(chan struct{}))
	expect(t, res, true, "kick from the pause")
	quiet(t, res, "after resume")
	ring()
	expect(t, res, true, "doorbell after resume")
}

func TestNotifierReplaceDoorbell(t *testing.T) {
	n := virtio.NewNotifier()
	r1, _ := bell(t)
	n.SetDoorbell(r1)
	n.Drain()
	res := waiter(n, make(chan struct{}))
	quiet(t, res, "no kick")
	// A BAR move: the old doorbell is detached and closed, a new one
	// attached; the worker ends up reading the new one.
	n.SetDoorbell(nil)
	r1.Close()
	expect(t, res, true, "detach")
	quiet(t, res, "no doorbell")
	n.Kick()
	expect(t, res, true, "MMIO kick without doorbell")
	r2, ring := bell(t)
	n.SetDoorbell(r2)
	expect(t, res, true, "attach")
	ring()
	expect(t, res, true, "new doorbell")
	quiet(t, res, "after new doorbell")
}

// plainReader has no read deadline, so a Notifier forwards it.
type plainReader struct{ io.ReadCloser }

func TestNotifierForwarded(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plain bool
	}{{"C", false}, {"no deadline", true}} {
		t.Run(tt.name, func(t *testing.T) {
			n := virtio.NewNotifier()
			r, ring := bell(t)
			if tt.plain {
				n.SetDoorbell(plainReader{r})
			} else {
				n.SetDoorbell(r)
			}
			n.Drain()
			var ch <-chan struct{}
			if !tt.plain {
				ch = n.C()
			}
			stop := make(chan struct{})
			res := waiter(n, stop)
			quiet(t, res, "no kick")
			ring()
			expect(t, res, true, "forwarded kick")
			if ch != nil {
				close(stop)
				stopped(t, res)
				ring()
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Fatal("no kick on C")
				}
			}
		})
	}
}
