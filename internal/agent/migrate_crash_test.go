package agent

import (
	"context"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// waitRecord polls the migration record of VM name until ok accepts it.
func waitRecord(t *testing.T, st *store.Store, name, what string, ok func(store.Migration) bool) store.Migration {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := st.GetMigration(context.Background(), name)
		if err == nil && ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("migration of %s never became %s: %+v, %v", name, what, m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vmmCount is how many VMM processes of VM name the agents ids run.
func vmmCount(name string, ids ...string) int {
	n := 0
	for _, id := range ids {
		n += len(node.FindVMMs(id)[name])
	}
	return n
}

// runsOnce waits until VM name runs as one VMM of the agents ids, on the
// host its definition names, and returns it as the API shows it.
func runsOnce(t *testing.T, ta testAgent, name string, ids ...string) api.VM {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := ta.cli.GetVM(context.Background(), name)
		n := vmmCount(name, ids...)
		if err == nil && n == 1 && v.Status.State == api.StateRunning && v.Status.Host == v.Host && alive(v.Status.PID) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM %s does not run once: %d VMMs, %+v, %v", name, n, v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMigrateSourceAgentCrash kills the source's agent (a process of its
// own, by its PID) in the middle of live migrations and starts it again:
// the new agent takes over a migration its VMM still sends, which it
// cancels on request, and finishes one that its VMM completed; the VM
// runs once, on one host, at the end of each.
func TestMigrateSourceAgentCrash(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	tb := startAgent(t, dirB, func(c *Config) { c.Executable = govisorBin(t); c.HostName = "hostb" })
	defer tb.Shutdown(context.Background())
	src := startAgentProc(t, dirA, "hosta", tb.st.Endpoints())
	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))
	s := spec("phoenix", k, api.RestartOnFailure)
	s.StopTimeout = "0s"
	if _, err := src.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, tb.cli, "phoenix", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })

	// 1. A migration the VMM keeps sending while no agent watches.
	go src.cli.Migrate(ctx, "phoenix", api.MigrateRequest{Host: "hostb", Bandwidth: 1024})
	waitVM(t, tb.cli, "phoenix", "migrating", func(v api.VM) bool {
		return v.Status.Migration != nil && v.Status.Migration.State == api.MigrationRunning && v.Status.Migration.BytesSent > 0
	})
	waitRecord(t, tb.st, "phoenix", "running", func(m store.Migration) bool { return m.Phase == store.MigrationRunning })
	src.kill(t)
	time.Sleep(time.Second)
	if !alive(v.Status.PID) {
		t.Fatal("the source VMM died with its agent")
	}
	src.start(t)
	// The new agent took the migration over: it is still under way, and
	// the new agent cancels it.
	if m := waitRecord(t, tb.st, "phoenix", "still running", func(store.Migration) bool { return true }); m.Phase != store.MigrationRunning {
		t.Fatalf("after the restart, the migration is %s: %s\n%s", m.Phase, m.Error, src.log())
	}
	if _, err := src.cli.CancelMigrate(ctx, "phoenix"); err != nil {
		t.Fatalf("cancel the resumed migration: %v\n%s", err, src.log())
	}
	m := waitRecord(t, tb.st, "phoenix", "ended", func(m store.Migration) bool { return m.Phase.Final() })
	if m.Phase != store.MigrationCancelled {
		t.Errorf("cancelled migration ended %s: %s", m.Phase, m.Error)
	}
	got := runsOnce(t, tb, "phoenix", src.id, tb.id)
	if got.Host != "hosta" || got.Status.PID != v.Status.PID {
		t.Fatalf("after the cancelled migration: host %s, %+v", got.Host, got.Status)
	}
	for deadline := time.Now().Add(30 * time.Second); tb.node.IncomingCount() != 0 || vmmCount("phoenix", tb.id) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the destination keeps its VMM: %d incoming, processes %v", tb.node.IncomingCount(), node.FindVMMs(tb.id))
		}
	}

	// 2. A migration that ends (a few seconds long), its agent killed as
	// soon as the VMM sends: the VMM completes it, while no agent watches
	// or under the new agent's eyes, and the new agent finishes it.
	prev := m
	go src.cli.Migrate(ctx, "phoenix", api.MigrateRequest{Host: "hostb", Bandwidth: 8192})
	waitVM(t, tb.cli, "phoenix", "migrating", func(v api.VM) bool {
		m := v.Status.Migration
		return m != nil && m.State == api.MigrationRunning && m.Started.After(prev.Created) && m.BytesSent > 0
	})
	src.kill(t)
	time.Sleep(time.Second)
	src.start(t)
	m = waitRecord(t, tb.st, "phoenix", "ended", func(m store.Migration) bool { return m.Phase.Final() })
	got = runsOnce(t, tb, "phoenix", src.id, tb.id)
	t.Logf("migration after the crash: %s %s; the VM runs on %s", m.Phase, m.Error, got.Host)
	if m.Phase != store.MigrationDone || got.Host != "hostb" {
		t.Fatalf("migration %s (%s, %+v), VM on %s\n%s", m.Phase, m.Error, m.Result, got.Host, src.log())
	}
	// Its figures survive the crash: from the VMM's API if the new agent
	// saw it end, else from the file the VMM left (vmmapi.MigratedFile).
	if m.Result == nil || m.Result.Rounds == 0 || m.Result.BytesSent == 0 {
		t.Errorf("the finished migration lost its figures: %+v", m.Result)
	}
	if alive(v.Status.PID) {
		t.Errorf("the source VMM %d still runs", v.Status.PID)
	}
	if _, err := tb.cli.Action(ctx, "phoenix", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateDestinationAgentCrash kills the destination's agent (a
// process of its own, by its PID) in the middle of a live migration: the
// source gives the migration up, the VM keeps running on the source, the
// record fails, and the destination's agent, started again, leaves no VMM
// of the VM behind and takes the next migration.
func TestMigrateDestinationAgentCrash(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	ta := startAgent(t, dirA, func(c *Config) { c.Executable = govisorBin(t) })
	defer ta.Shutdown(context.Background())
	dst := startAgentProc(t, dirB, "hostb", ta.st.Endpoints())
	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))
	s := spec("stayer", k, api.RestartOnFailure)
	s.StopTimeout = "0s"
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "stayer", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
	waitVMMAPI(t, ta, "stayer")

	done := make(chan error, 1)
	go func() {
		_, err := ta.cli.Migrate(ctx, "stayer", api.MigrateRequest{Host: "hostb", Bandwidth: 1024})
		done <- err
	}()
	waitVM(t, ta.cli, "stayer", "migrating", func(v api.VM) bool {
		return v.Status.Migration != nil && v.Status.Migration.State == api.MigrationRunning && v.Status.Migration.BytesSent > 0
	})
	dst.kill(t)
	select {
	case err := <-done:
		wantAPIError(t, "destination agent killed", err, 502, "", "keeps running on testhost")
	case <-time.After(60 * time.Second):
		t.Fatal("the migration did not end after its destination's agent died")
	}
	m := waitRecord(t, ta.st, "stayer", "failed", func(m store.Migration) bool { return m.Phase.Final() })
	if m.Phase != store.MigrationFailed {
		t.Errorf("migration ended %s: %s", m.Phase, m.Error)
	}
	got := runsOnce(t, ta, "stayer", ta.id, dst.id)
	if got.Host != "testhost" || got.Status.PID != v.Status.PID {
		t.Fatalf("after the failed migration: host %s, %+v", got.Host, got.Status)
	}
	dst.start(t)
	for deadline := time.Now().Add(30 * time.Second); vmmCount("stayer", dst.id) != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted destination keeps VMMs %v\n%s", node.FindVMMs(dst.id), dst.log())
		}
	}
	// The destination works again.
	if got, err := ta.cli.Migrate(ctx, "stayer", api.MigrateRequest{Host: "hostb"}); err != nil || got.Host != "hostb" {
		t.Fatalf("migrate after the restart: %+v, %v\n%s", got, err, dst.log())
	}
	runsOnce(t, ta, "stayer", ta.id, dst.id)
	if _, err := dst.cli.Action(ctx, "stayer", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
