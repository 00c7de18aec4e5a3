package kvmtest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTallyLeavesOutSkipped: a test that got KVM and then skipped is not
// counted as run.
func TestTallyLeavesOutSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tally")
	t.Setenv("GOVISOR_KVM_TALLY", path)
	t.Run("skips", func(t *testing.T) {
		tally(t)
		t.Skip("gated off")
	})
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a skipped test was tallied (%v)", err)
	}
	t.Run("runs", func(t *testing.T) { tally(t) })
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "TestTallyLeavesOutSkipped\n" {
		t.Errorf("tally %q, want the test's name once", got)
	}
}
