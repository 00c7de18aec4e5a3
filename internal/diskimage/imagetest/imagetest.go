// Package imagetest holds what the disk-format interop tests share: finding
// qemu-img and running host tools.
package imagetest

import (
	"os/exec"
	"strings"
	"testing"
)

// QemuImg returns the qemu-img path, skipping the test loudly when it is missing.
func QemuImg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("SKIPPING QEMU-IMG INTEROP TEST: qemu-img not installed (run scripts/deps.sh test)")
	}
	return p
}

// Run runs a host command and fails the test, with its output, if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
