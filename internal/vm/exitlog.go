package vm

import (
	"fmt"
	"strings"

	"github.com/govisor/govisor/internal/kvm"
)

// exitLog keeps a vCPU's last exits to user space, told with a triple
// fault: on a shutdown, KVM on AMD resets the vCPU (the VMCB is undefined
// after a SHUTDOWN intercept, AMD APM vol. 2 section 15.8), so they are
// all that is left of what led to it. Only its runner's thread touches it.
type exitLog struct {
	recs [8]exitRec
	n    uint64
}

// exitRec is one exit: its reason, and the port or address it accessed.
type exitRec struct {
	reason uint32
	addr   uint64 // the port of a port-I/O exit, the address of an MMIO one
	size   uint8
	write  bool
}

func (l *exitLog) add(r exitRec) {
	l.recs[l.n%uint64(len(l.recs))] = r
	l.n++
}

// String lists the exits, oldest first.
func (l *exitLog) String() string {
	var parts []string
	first := uint64(0)
	if l.n > uint64(len(l.recs)) {
		first = l.n - uint64(len(l.recs))
	}
	for i := first; i < l.n; i++ {
		r := l.recs[i%uint64(len(l.recs))]
		s := ExitReasonName(r.reason)
		switch r.reason {
		case kvm.ExitIO, kvm.ExitMMIO:
			dir := "in"
			if r.write {
				dir = "out"
			}
			s += fmt.Sprintf(" %s %#x/%d", dir, r.addr, r.size)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}
