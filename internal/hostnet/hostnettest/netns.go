// Package hostnettest runs a test inside a network namespace of its own,
// so that tests create bridges and TAPs without touching the host's
// network. Network namespaces belong to threads, and a Go program runs on
// many, so the test binary re-executes itself (running only the one test)
// in a child process made with CLONE_NEWNET: every thread of that child,
// and every process it spawns (VMMs, ip), is in the new namespace.
package hostnettest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// envKey names the test the re-executed binary runs inside the namespace.
const envKey = "GOVISOR_TEST_NETNS"

// Enter reports true when t already runs in its own network namespace
// (the loopback device is up): the test goes on. Otherwise it runs t in a
// new namespace in a child process, reports the child's output and result
// as t's, and returns false: the test returns at once.
func Enter(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envKey) == t.Name() {
		// Processes the test starts must not take themselves for it.
		os.Unsetenv(envKey)
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Fatalf("hostnettest: bring lo up in the test namespace: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("hostnettest: creating a network namespace needs root")
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(run, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envKey+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("%s in a new network namespace: %v\n%s", t.Name(), err, out)
	case strings.Contains(string(out), "--- SKIP: "+t.Name()):
		t.Skipf("skipped in the network namespace:\n%s", out)
	case !strings.Contains(string(out), "--- PASS: "+t.Name()):
		t.Fatalf("%s did not run in the network namespace:\n%s", t.Name(), out)
	}
	t.Logf("in a new network namespace:\n%s", out)
	return false
}
