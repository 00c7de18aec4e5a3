package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestCtlStats reads a running tiny guest's statistics with `govisor ctl
// stats`: its port writes show as IO exits, and the counts grow.
func TestCtlStats(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	elf := filepath.Join(dir, "dirty.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(dirtyGuest(), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startVMM(t, filepath.Join(dir, "api.sock"), "--kernel", elf, "--boot", "pvh", "--memory", "64M", "--cpus", "2")
	p.waitAPI(t)
	read := func() vmmapi.Stats {
		t.Helper()
		out, errOut, err := runCtl(t, p.sock, "stats")
		if err != nil {
			t.Fatalf("ctl stats: %v\n%s", err, errOut)
		}
		var st vmmapi.Stats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("ctl stats output %q: %v", out, err)
		}
		return st
	}
	// The API answers from the VMM's start, maybe before the guest's first
	// instruction: wait for its UP line (port I/O) before judging.
	first := read()
	for deadline := time.Now().Add(20 * time.Second); first.Serial.TxBytes < uint64(len("UP\n")); first = read() {
		if time.Now().After(deadline) {
			t.Fatalf("the guest wrote no UP line in 20 s: %+v", first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var sum uint64
	for _, n := range first.Exits {
		sum += n
	}
	if first.Exits["IO"] == 0 || sum != first.ExitsTotal {
		t.Fatalf("stats %+v: want IO exits, and a total that is their sum (%d)", first, sum)
	}
	if first.Serial.TxBytes != uint64(len("UP\n")) {
		t.Errorf("serial bytes %+v, want the guest's UP line", first.Serial)
	}
	if first.Disks == nil || len(first.Disks) != 0 || first.NICs == nil || len(first.NICs) != 0 {
		t.Errorf("a VM without disks or NICs reports disks %v, NICs %v (want empty lists)", first.Disks, first.NICs)
	}
	for deadline := time.Now().Add(20 * time.Second); read().Exits["IO"] <= first.Exits["IO"]; {
		if time.Now().After(deadline) {
			t.Fatal("IO exits do not grow while the guest runs")
		}
		time.Sleep(20 * time.Millisecond)
	}
	runCtl(t, p.sock, "stop")
	p.waitExit(t, "VMM after stop")
}
