package virtio

import "sync"

// Workers are the goroutines a device runs between Activate and Reset:
// Start opens a new stop channel, Go runs a worker that watches it, and
// Stop closes it and waits for them all. The device's own lock guards its
// Workers (Activate and Reset hold it), as it guards the rest of its state.
type Workers struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

// Active reports whether workers were started and not stopped since.
func (w *Workers) Active() bool { return w.stop != nil }

// Start opens the stop channel of the workers Go starts next.
func (w *Workers) Start() { w.stop = make(chan struct{}) }

// Go runs fn on its own goroutine; its stop closes when the device resets.
func (w *Workers) Go(fn func(stop <-chan struct{})) {
	stop := w.stop
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		fn(stop)
	}()
}

// Stop closes the stop channel, calls wake (if not nil) to rouse workers
// blocked somewhere else than on it, and waits until every worker has
// returned (each finishes the chain it is on). It reports whether workers
// were active; if not, it does nothing.
func (w *Workers) Stop(wake func()) bool {
	if w.stop == nil {
		return false
	}
	close(w.stop)
	if wake != nil {
		wake()
	}
	w.wg.Wait()
	w.stop = nil
	return true
}

// Reset is a device's whole Reset (Device) when its lock mu guards its
// Workers and nothing but the workers stops: under mu, Stop with no wake.
func (w *Workers) Reset(mu sync.Locker) {
	mu.Lock()
	defer mu.Unlock()
	w.Stop(nil)
}
