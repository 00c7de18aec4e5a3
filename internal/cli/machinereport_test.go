package cli

import (
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestMachineReportOnSIGUSR1 asks a running VMM for its machine report and
// checks that it names the vCPU's registers (its guest has no virtio driver,
// so no queue is listed) and that the VMM runs on.
func TestMachineReportOnSIGUSR1(t *testing.T) {
	kvmtest.Require(t)
	cmd, done := startSpinning(t, "SPINNING", "--kernel", spinGuest(t, "SPINNING"))
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second) // the report watches exits for 2 s, then pauses the machine
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("the VMM ended after its report: %v", err)
	}
	r := <-done
	for _, want := range []string{
		`machine report: VM exits in 2s:`,
		`machine report: vCPU 0: CS:RIP [0-9a-f]{4}:0x[0-9a-f]+ RFLAGS 0x[0-9a-f]+`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stderr) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}
