package kvmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// SeaBIOS returns the path of the SeaBIOS image that scripts/firmware.sh
// (run by `make guest`) puts beside the test guest. It fails the test,
// naming the fix, when it is missing: a machine with KVM must run the
// firmware boot tests.
func SeaBIOS(t testing.TB) string {
	t.Helper()
	Require(t)
	dir := os.Getenv("GOVISOR_GUEST_DIR")
	if dir == "" {
		if c := os.Getenv("GOVISOR_CACHE"); c != "" {
			dir = filepath.Join(c, "guest")
		} else if root := repoRoot(); root != "" {
			dir = filepath.Join(root, ".cache", "guest")
		}
	}
	p := filepath.Join(dir, "bios-256k.bin")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("SeaBIOS image missing (%v): run scripts/firmware.sh (`make guest` does)", err)
	}
	return p
}
