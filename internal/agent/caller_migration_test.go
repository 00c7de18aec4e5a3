package agent

import (
	"context"
	"testing"

	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/cluster/store"
)

// TestMigrationActsForItsCaller: a migration asked for through the API
// keeps its user in its record (store.Migration.Caller), and the agent
// carrying it out (at once, or resuming it after a restart) calls the
// other agent as that user; the cluster's own migrations, and a record
// whose value does not parse, stay the agents'.
func TestMigrationActsForItsCaller(t *testing.T) {
	bob := apitoken.Identity{Name: "bob", Role: apitoken.Operator}
	asked := apitoken.WithIdentity(context.Background(), bob)
	rec := store.Migration{VM: "web", Caller: callerValue(asked)}
	if rec.Caller != "operator bob" {
		t.Fatalf("record's caller %q, want %q", rec.Caller, "operator bob")
	}
	for _, c := range []struct {
		name   string
		m      store.Migration
		header string
	}{
		{"asked through the API", rec, "operator bob"},
		{"the cluster's own (evacuation, balance)", store.Migration{VM: "web", CreatedBy: "maintenance"}, ""},
		{"a record that does not parse", store.Migration{VM: "web", Caller: "emperor bob"}, ""},
	} {
		ctx := migrationCtx(context.Background(), c.m)
		if got := callerHeader(ctx).Get(CallerHeader); got != c.header {
			t.Errorf("%s: the peer calls carry %q, want %q", c.name, got, c.header)
		}
	}
}
