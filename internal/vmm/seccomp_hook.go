package vmm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TestSeccompViolation is a test-only hook: a VMM whose environment has
// it set to 1 makes a syscall off its seccomp allow-list (acct(2)) right
// after installing its filter, so that tests see a VMM ended by its
// filter and reported as such. It does nothing without a filter.
const TestSeccompViolation = "GOVISOR_TEST_SECCOMP_VIOLATION"

// testSeccompViolation calls acct(NULL): harmless when allowed (an
// unprivileged VMM gets EPERM), and on no VMM allow-list.
func testSeccompViolation() {
	fmt.Fprintf(os.Stderr, "govisor: %s=1: calling acct(2), which the seccomp filter forbids\n", TestSeccompViolation)
	_, _, errno := unix.Syscall(unix.SYS_ACCT, 0, 0, 0)
	fmt.Fprintf(os.Stderr, "govisor: acct(2) returned: %v (the filter let it through)\n", errno)
}
