package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestMigrationRequestedElsewhere: a migration recorded through another
// host's agent (as the cluster's controllers do, without waiting) is
// carried out by the agent of the VM's host; a second request meanwhile
// is refused.
func TestMigrationRequestedElsewhere(t *testing.T) {
	kvmtest.Require(t)
	ctx := context.Background()
	dirA, dirB := t.TempDir(), t.TempDir()
	ta, tb := twoHosts(t, dirA, dirB)
	v := runIdle(t, ta, dirA, "asked", api.RestartNever)
	if err := tb.RequestMigration(ctx, "asked", api.MigrateRequest{Host: "testhost"}, "test"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a migration to the VM's own host: %v", err)
	}
	if err := tb.RequestMigration(ctx, "asked", api.MigrateRequest{Host: "hostb", Bandwidth: 1024}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := tb.RequestMigration(ctx, "asked", api.MigrateRequest{Host: "hostb"}, "test"); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second migration: %v, want ErrBusy", err)
	}
	// The slow one is cancelled through its record; then a fast one moves it.
	waitRecord(t, ta.st, "asked", "running", func(m store.Migration) bool { return m.Phase == store.MigrationRunning })
	m, err := ta.st.GetMigration(ctx, "asked")
	if err != nil {
		t.Fatal(err)
	}
	if m.CreatedBy != "test" || m.Source != "testhost" || m.Destination != "hostb" {
		t.Errorf("record %+v", m)
	}
	m.CancelRequested = true
	for {
		if _, err = ta.st.UpdateMigration(ctx, m); !errors.Is(err, store.ErrConflict) {
			break
		}
		if m, err = ta.st.GetMigration(ctx, "asked"); err != nil {
			t.Fatal(err)
		}
		m.CancelRequested = true
	}
	if err != nil {
		t.Fatal(err)
	}
	m = waitRecord(t, ta.st, "asked", "ended", func(m store.Migration) bool { return m.Phase.Final() })
	if m.Phase != store.MigrationCancelled {
		t.Fatalf("cancelled through the record: %s (%s)", m.Phase, m.Error)
	}
	if got := runsOnce(t, ta, "asked", ta.id, tb.id); got.Host != "testhost" || got.Status.PID != v.Status.PID {
		t.Fatalf("after the cancel: %s, %+v", got.Host, got.Status)
	}
	if err := tb.RequestMigration(ctx, "asked", api.MigrateRequest{Host: "hostb"}, "test"); err != nil {
		t.Fatal(err)
	}
	m = waitRecord(t, ta.st, "asked", "ended", func(m store.Migration) bool { return m.Phase.Final() && m.Phase != store.MigrationCancelled })
	if m.Phase != store.MigrationDone || m.Result == nil || m.Result.BytesSent <= 0 {
		t.Fatalf("requested migration: %+v", m)
	}
	if got := runsOnce(t, ta, "asked", ta.id, tb.id); got.Host != "hostb" {
		t.Fatalf("after the migration: %s, %+v", got.Host, got.Status)
	}
	if _, err := tb.cli.Action(ctx, "asked", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
