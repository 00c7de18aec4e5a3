package virtio

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestWorkers(t *testing.T) {
	var w Workers
	if w.Active() || w.Stop(nil) {
		t.Fatal("a zero Workers is active")
	}
	w.Start()
	var done atomic.Int32
	wake := make(chan struct{})
	w.Go(func(stop <-chan struct{}) { <-stop; done.Add(1) })
	// A worker blocked elsewhere than on stop returns once woken.
	w.Go(func(stop <-chan struct{}) { <-wake; done.Add(1) })
	if !w.Active() {
		t.Fatal("started Workers not active")
	}
	if !w.Stop(func() { close(wake) }) || done.Load() != 2 || w.Active() {
		t.Fatalf("Stop returned before its workers: %d done", done.Load())
	}
	w.Start() // a device activates again after a reset
	w.Go(func(stop <-chan struct{}) { <-stop; done.Add(1) })
	if !w.Stop(nil) || done.Load() != 3 {
		t.Fatalf("second round: %d done", done.Load())
	}
}

// TestWorkersReset checks Reset stops the workers under the device's lock.
func TestWorkersReset(t *testing.T) {
	var mu sync.Mutex
	var w Workers
	w.Reset(&mu) // a device never activated resets too
	w.Start()
	var done atomic.Bool
	w.Go(func(stop <-chan struct{}) {
		<-stop
		if mu.TryLock() {
			t.Error("Reset stops the workers without holding the lock")
			mu.Unlock()
		}
		done.Store(true)
	})
	w.Reset(&mu)
	if !done.Load() || w.Active() {
		t.Fatal("Reset returned before its worker")
	}
	if !mu.TryLock() {
		t.Fatal("Reset kept the lock")
	}
}
