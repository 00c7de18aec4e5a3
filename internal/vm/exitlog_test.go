package vm

import (
	"testing"

	"github.com/govisor/govisor/internal/kvm"
)

func TestExitLog(t *testing.T) {
	var l exitLog
	if l.String() != "" {
		t.Errorf("empty log: %q", l.String())
	}
	l.add(exitRec{reason: kvm.ExitIO, addr: 0x604, size: 2, write: true})
	l.add(exitRec{reason: kvm.ExitHLT})
	want := ExitReasonName(kvm.ExitIO) + " out 0x604/2, " + ExitReasonName(kvm.ExitHLT)
	if got := l.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for i := range 20 {
		l.add(exitRec{reason: kvm.ExitMMIO, addr: uint64(i), size: 4})
	}
	got := l.String()
	if want := ExitReasonName(kvm.ExitMMIO) + " in 0xc/4"; len(got) == 0 || got[:len(want)] != want {
		t.Errorf("after 22 exits the oldest kept is the 15th: %q", got)
	}
}
