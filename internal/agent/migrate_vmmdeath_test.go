package agent

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestMigrateSourceVMMKilled: the source VMM dies while it sends the VM
// (SIGKILL, no last words). The source agent asks the destination whether
// the guest arrived there; it had not (the copy was still under way), so
// the migration fails, the destination's VMM goes, and the VM restarts on
// its host by its restart policy: one copy, here. The destination answers
// the question itself through GET .../incoming.
func TestMigrateSourceVMMKilled(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	ta := startAgent(t, dirA, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	tb := startAgent(t, dirB, func(c *Config) { c.Executable = bin; c.HostName = "hostb"; c.EtcdEndpoints = ta.st.Endpoints() })
	defer tb.Shutdown(context.Background())
	s := spec("doomed", writeGuest(t, dirA, "idle.elf", idleGuest("UP\n")), api.RestartOnFailure)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "doomed", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "doomed")
	if in, err := tb.cli.IncomingState(ctx, "doomed"); err != nil || in.State != api.IncomingNone {
		t.Errorf("before the migration the destination says %+v, %v; want %s", in, err, api.IncomingNone)
	}

	done := make(chan error, 1)
	go func() {
		_, err := ta.cli.Migrate(ctx, "doomed", api.MigrateRequest{Host: "hostb", Bandwidth: 1024})
		done <- err
	}()
	waitVM(t, ta.cli, "doomed", "migrating", func(v api.VM) bool {
		m := v.Status.Migration
		return m != nil && m.State == api.MigrationRunning && m.BytesSent > 0
	})
	if in, err := tb.cli.IncomingState(ctx, "doomed"); err != nil || in.State != api.IncomingWaiting {
		t.Errorf("during the migration the destination says %+v, %v; want %s", in, err, api.IncomingWaiting)
	}
	if err := syscall.Kill(v.Status.PID, syscall.SIGKILL); err != nil { // the VMM this test's agent started
		t.Fatal(err)
	}
	select {
	case err := <-done:
		wantAPIError(t, "migration whose source VMM died", err, 502, "", "keeps running on testhost")
	case <-time.After(time.Minute):
		t.Fatal("the migration did not end a minute after its source VMM died")
	}
	got := waitVM(t, ta.cli, "doomed", "restarted here", func(v2 api.VM) bool {
		return v2.Status.State == api.StateRunning && v2.Status.PID != v.Status.PID
	})
	if got.Host != "testhost" || got.Status.Host != "testhost" {
		t.Errorf("after its VMM died mid-migration: host %s, status %+v", got.Host, got.Status)
	}
	for deadline := time.Now().Add(30 * time.Second); tb.node.IncomingCount() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the destination keeps %d incoming VMMs", tb.node.IncomingCount())
		}
	}
}
