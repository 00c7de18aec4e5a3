package vm

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// stallReport writes where a machine that stopped making progress stood,
// at once to stderr (a lab host may not outlive the test's clean-up):
// every goroutine of the test binary (the device workers among them), then
// the machine's own report (WriteDebugReport). An intermittent SeaBIOS
// disk-read stall in TCG lab hosts (docs/firmware.md) left nothing else to
// go on.
func stallReport(t *testing.T, m *Machine) {
	t.Helper()
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	fmt.Fprintf(os.Stderr, "STUCK MACHINE (%s): goroutines:\n%s\n", t.Name(), buf)
	if err := m.WriteDebugReport(os.Stderr, 2*time.Second, 20*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "STUCK MACHINE: %v\n", err)
	}
}
