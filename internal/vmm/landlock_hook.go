package vmm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// TestLandlockProbe is a test-only hook: a VMM whose environment has it
// set to 1 writes a script into its working directory (the VM's folder,
// writable) and tries to run it, before its seccomp filter goes on. Under
// the jail's Landlock rules (only the VMM binary may be executed) the
// exec is refused; the VMM logs which way it went. Without Landlock the
// script runs `/govisor help`, which does nothing.
const TestLandlockProbe = "GOVISOR_TEST_LANDLOCK_PROBE"

// The probe's log lines.
const (
	LandlockProbeRefused = "landlock probe: exec refused"
	LandlockProbeRan     = "landlock probe: exec ran"
)

func testLandlockProbe() {
	p, err := filepath.Abs("landlock-probe")
	if err == nil {
		err = os.WriteFile(p, []byte("#!/govisor help\n"), 0o700)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "landlock probe: cannot write the script: %v\n", err)
		return
	}
	defer os.Remove(p)
	if err := exec.Command(p).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", LandlockProbeRefused, err)
		return
	}
	fmt.Fprintln(os.Stderr, LandlockProbeRan)
}
