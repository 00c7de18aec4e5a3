package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// TestMigrateBetweenAgents runs two agents (hosts "testhost" and "hostb",
// separate state directories, one etcd) and live-migrates a VM from one to
// the other and back through the API; then a migration whose destination
// VMM cannot start fails and leaves the VM running where it was.
func TestMigrateBetweenAgents(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB, dirC := t.TempDir(), t.TempDir(), t.TempDir()
	// Host "broken" runs VMMs with a binary that exits at once.
	ta, tb, tc := threeHosts(t, dirA, dirB, dirC)

	v := runIdle(t, ta, dirA, "mover", api.RestartOnFailure)

	// Bad requests change nothing.
	_, err := ta.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "nowhere"})
	wantAPIError(t, "unknown host", err, 400, "host", "no live agent")
	_, err = ta.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "testhost"})
	wantAPIError(t, "to itself", err, 400, "host", "already runs there")
	_, err = ta.cli.Migrate(ctx, "mover", api.MigrateRequest{})
	wantAPIError(t, "no host", err, 400, "host", "required")
	_, err = tb.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "hostb"})
	wantAPIError(t, "asked of the wrong agent", err, 421, "", "runs on testhost")

	// testhost -> hostb.
	got, err := ta.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "hostb"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "hostb" || got.Status.Host != "hostb" || got.Status.State != api.StateRunning || got.Status.PID == v.Status.PID {
		t.Fatalf("after migration: host %s, status %+v", got.Host, got.Status)
	}
	if m := got.Status.Migration; m == nil || m.State != api.MigrationCompleted || m.To != "hostb" || m.BytesSent <= 0 {
		t.Errorf("after migration: migration status %+v", m)
	}
	waitVM(t, ta.cli, "mover", "gone from the source", func(api.VM) bool { return !alive(v.Status.PID) })
	if c := vmmConfigOf(t, got.Status.PID); !strings.HasPrefix(c.Incoming, "127.0.0.1:") {
		t.Errorf("destination VMM runs %+v", c)
	}
	// The VM is hostb's now: its agent pauses it; testhost's refuses.
	if _, err := tb.cli.Pause(ctx, "mover"); err != nil {
		t.Fatal(err)
	}
	_, err = ta.cli.Pause(ctx, "mover")
	wantAPIError(t, "pause on the old host", err, 421, "", "runs on hostb")
	_, err = tb.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "testhost"})
	wantAPIError(t, "migrate paused", err, 409, "", "it is paused; it must be running")
	if _, err := tb.cli.Resume(ctx, "mover"); err != nil {
		t.Fatal(err)
	}

	// hostb -> broken: fails, and the VM keeps running on hostb.
	before := got.Status.PID
	_, err = tb.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "broken"})
	wantAPIError(t, "destination fails", err, 502, "", "keeps running on hostb")
	v = waitVM(t, tb.cli, "mover", "running on hostb", func(v api.VM) bool {
		return v.Status.State == api.StateRunning && v.Status.Migration != nil && v.Status.Migration.State == api.MigrationFailed
	})
	if v.Host != "hostb" || v.Status.PID != before || !alive(before) {
		t.Fatalf("after a failed migration: host %s, status %+v", v.Host, v.Status)
	}
	left := tc.node.IncomingCount()
	if left != 0 {
		t.Errorf("the failed destination keeps %d incoming VMMs", left)
	}

	// hostb -> testhost: back home, where it is stopped and deleted.
	if got, err = tb.cli.Migrate(ctx, "mover", api.MigrateRequest{Host: "testhost"}); err != nil || got.Host != "testhost" {
		t.Fatalf("migrate back: %+v, %v", got, err)
	}
	if _, err := ta.cli.Action(ctx, "mover", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ta.cli.DeleteVM(ctx, "mover"); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateProgressAndCancel slows a migration down (a bandwidth cap),
// watches its progress in the VM's status, and cancels it: the VM keeps
// running on its host and the destination's VMM goes.
func TestMigrateProgressAndCancel(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	ta, tb := twoHosts(t, dirA, dirB)
	v := runIdle(t, ta, dirA, "slow", api.RestartNever)
	_, err := ta.cli.CancelMigrate(ctx, "slow")
	wantAPIError(t, "cancel without a migration", err, 409, "", "no migration of VM slow is running")

	done := make(chan error, 1)
	go func() {
		_, err := ta.cli.Migrate(ctx, "slow", api.MigrateRequest{Host: "hostb", Bandwidth: 1024})
		done <- err
	}()
	got := waitVM(t, ta.cli, "slow", "migrating with progress", func(v api.VM) bool {
		m := v.Status.Migration
		return m != nil && m.State == api.MigrationRunning && m.To == "hostb" && m.BytesSent > 0
	})
	if got.Status.State != api.StateRunning || got.Host != "testhost" {
		t.Errorf("during the migration: host %s, %+v", got.Host, got.Status)
	}
	if m, err := ta.cli.Metrics(ctx); err != nil || !strings.Contains(string(m), `govisor_vm_migration_bytes_sent{to="hostb",vm="slow"}`) {
		t.Errorf("metrics during the migration lack its progress (%v):\n%s", err, m)
	}
	_, err = ta.cli.Pause(ctx, "slow")
	wantAPIError(t, "pause while migrating", err, 409, "", "being migrated")
	if _, err := ta.cli.CancelMigrate(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, "cancelled migration", <-done, 502, "", "keeps running on testhost")
	got = waitVM(t, ta.cli, "slow", "still here", func(v api.VM) bool {
		return v.Status.Migration != nil && v.Status.Migration.State == api.MigrationFailed
	})
	if got.Host != "testhost" || got.Status.State != api.StateRunning || got.Status.PID != v.Status.PID || !alive(v.Status.PID) {
		t.Fatalf("after cancel: host %s, %+v", got.Host, got.Status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := tb.node.IncomingCount()
		if left == 0 && len(node.FindVMMs(tb.id)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the destination keeps %d incoming VMMs, processes %v", left, node.FindVMMs(tb.id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMigrateOverTCP: the destination agent serves its API only on TCP
// (TLS and bearer tokens, as across machines); the source reaches it with
// the cluster's token and certificate.
func TestMigrateOverTCP(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	ctx := context.Background()
	dir := t.TempDir()
	cr := writeCreds(t, dir, "cluster-token\n")
	tls := func(c *Config) {
		cr.serve(c)
		c.Executable = bin
	}
	ta := startAgent(t, filepath.Join(dir, "a"), tls)
	defer ta.Shutdown(context.Background())
	tb := startAgent(t, filepath.Join(dir, "b"), func(c *Config) {
		tls(c)
		c.Socket, c.HostName, c.EtcdEndpoints = "", "tcphost", ta.st.Endpoints()
	})
	defer tb.Shutdown(context.Background())
	v := runIdle(t, ta, dir, "far", api.RestartNever)
	got, err := ta.cli.Migrate(ctx, "far", api.MigrateRequest{Host: "tcphost"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "tcphost" || got.Status.Host != "tcphost" || got.Status.State != api.StateRunning || got.Status.PID == v.Status.PID {
		t.Fatalf("after migration: host %s, %+v", got.Host, got.Status)
	}
	cb := cr.client(t, tb, "cluster-token")
	if _, err := cb.Action(ctx, "far", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
