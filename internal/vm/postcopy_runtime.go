package vm

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// spareProcs is how many Ps post-copy adds for the Go code that may wait on
// missing pages at once (device workers, API handlers) beside the fault
// handler.
const spareProcs = 32

// postCopyRuntime counts the post-copies under way in this process and
// keeps the settings they replaced.
var postCopyRuntime struct {
	mu        sync.Mutex
	holders   int
	gcPercent int
	procs     int
}

// holdRuntime prepares the Go runtime for guest memory that can block: a
// goroutine touching a missing page sleeps in the kernel's page fault,
// holding its P and never reaching a safe point (often inside memmove). A
// stop-the-world, as every GC cycle has, would wait for it forever while
// the fault handler, which needs the world running, could not resolve the
// fault; and with every P held by such goroutines the handler could not
// run at all. So no GC runs while post-copy does, and there are spare Ps.
// Call it before any page is missing; releaseRuntime undoes it once none is.
func holdRuntime() {
	r := &postCopyRuntime
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holders == 0 {
		r.gcPercent = debug.SetGCPercent(-1)
		r.procs = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(r.procs + spareProcs)
	}
	r.holders++
}

// releaseRuntime undoes holdRuntime once the last post-copy no longer has
// missing pages (both settings stop the world).
func releaseRuntime() {
	r := &postCopyRuntime
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holders--; r.holders == 0 {
		runtime.GOMAXPROCS(r.procs)
		debug.SetGCPercent(r.gcPercent)
	}
}
