package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestMigrateDestinationKilled kills the destination VMM in the middle of
// a migration: `govisor ctl migrate` fails with the reason, the source VM
// runs on as before, and a migration to a new destination then succeeds
// (exactly one copy of the VM runs throughout).
func TestMigrateDestinationKilled(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	src, dst, addr := startMigrationPair(t, dir)

	ctl, _ := startCtlMigrate(t, src.sock, addr, "--bandwidth", "256K", "-q")
	c := vmmapi.NewClient(src.sock)
	dst.cmd.Process.Kill() // the destination host dies (only the process this test started)
	select {
	case err := <-ctl.done:
		if err == nil {
			t.Fatalf("ctl migrate succeeded though its destination was killed: %s", ctl.out.String())
		}
		t.Logf("ctl migrate: %v: %s", err, strings.TrimSpace(ctl.err.String()))
	case <-time.After(60 * time.Second):
		t.Fatal("ctl migrate still runs a minute after its destination died")
	}
	if info := src.waitAPI(t); info.State != "running" {
		t.Fatalf("source after the failed migration: %+v", info)
	}
	before := guestExits(t, src.sock)
	for deadline := time.Now().Add(20 * time.Second); guestExits(t, src.sock) == before; {
		if time.Now().After(deadline) {
			t.Fatal("the source guest stopped running after its destination died")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p, err := c.MigrateProgress(t.Context()); err != nil || p.State != vmmapi.MigrateFailed || p.Error == "" {
		t.Errorf("migration state after the destination died: %+v, %v", p, err)
	}

	addr2 := freeAddr(t)
	dst2 := startVMM(t, filepath.Join(dir, "dst2.sock"), "--incoming", addr2, "--memory", "64M")
	dst2.waitAPI(t)
	if _, errOut, err := runCtl(t, src.sock, "migrate", addr2, "--max-downtime", "500ms", "-q"); err != nil {
		t.Fatalf("migration to a new destination: %v\n%s", err, errOut)
	}
	if err := src.waitExit(t, "source after migrating"); err != nil {
		t.Fatalf("source: %v\n%s", err, src.out.String())
	}
	before = guestExits(t, dst2.sock)
	for deadline := time.Now().Add(20 * time.Second); guestExits(t, dst2.sock) == before; {
		if time.Now().After(deadline) {
			t.Fatal("the guest does not run on the new destination")
		}
		time.Sleep(20 * time.Millisecond)
	}
	runCtl(t, dst2.sock, "stop")
	dst2.waitExit(t, "destination after stop")
}
