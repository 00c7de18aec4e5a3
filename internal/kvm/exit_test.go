package kvm

import "testing"

func TestExitNeedsCompletion(t *testing.T) {
	for _, r := range []uint32{ExitIO, ExitMMIO, ExitHypercall, ExitX86RDMSR, ExitX86WRMSR, ExitXen} {
		if !ExitNeedsCompletion(r) {
			t.Errorf("exit %d: KVM completes it on the next KVM_RUN, ExitNeedsCompletion says no", r)
		}
	}
	for _, r := range []uint32{ExitUnknown, ExitHLT, ExitIntr, ExitIRQWindowOpen, ExitShutdown, ExitFailEntry, ExitInternalError, ExitSystemEvent} {
		if ExitNeedsCompletion(r) {
			t.Errorf("exit %d needs no completion, ExitNeedsCompletion says it does", r)
		}
	}
}
