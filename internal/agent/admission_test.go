package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/agent/service"
)

// TestHAAdmission: with HA admission control set to refuse, a start that
// would leave too little room to restart the largest host's HA VMs on the
// other is refused with the reason (create and start alike); defining the
// VM without starting it is allowed, and warn lets the start through. No
// VM runs (no KVM needed): the VMMs fail at once and their VMs stay desired
// running, holding their capacity.
func TestHAAdmission(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	ta := startAgent(t, dirA, func(c *Config) { c.Executable = "/bin/false" })
	t.Cleanup(func() { ta.Shutdown(context.Background()) })
	tb := startAgent(t, dirB, func(c *Config) {
		c.Executable, c.HostName, c.EtcdEndpoints = "/bin/false", "hostb", ta.st.Endpoints()
	})
	t.Cleanup(func() { tb.Shutdown(context.Background()) })
	ctx := context.Background()
	k := writeGuest(t, dirA, "idle.elf", idleGuest("UP\n"))
	h, err := ta.cli.Host(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Two thirds of a host: one fits beside the other host's, two do not.
	big := func(name string) api.VMSpec {
		s := spec(name, k, api.RestartOnFailure)
		s.Memory, s.HA = fmt.Sprintf("%dM", h.MemoryMiB*2/3), true
		return s
	}
	if _, err := ta.cli.PutSettings(ctx, api.ClusterSettings{HAAdmission: "sometimes"}); statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "haAdmission") {
		t.Errorf("a bad policy: %v", err)
	}
	for _, bad := range []api.ClusterSettings{{Balance: "often"}, {BalanceThreshold: 1.5}, {HostFailures: -1}} {
		if _, err := ta.cli.PutSettings(ctx, bad); statusOf(err) != http.StatusBadRequest {
			t.Errorf("settings %+v: %v", bad, err)
		}
	}
	if cs, err := ta.cli.PutSettings(ctx, api.ClusterSettings{HAAdmission: api.AdmissionRefuse}); err != nil || cs.HAAdmission != api.AdmissionRefuse {
		t.Fatalf("set refuse: %+v %v", cs, err)
	}
	if _, err := ta.cli.CreateVMOn(ctx, big("ha-a"), true, "testhost"); err != nil {
		t.Fatalf("the first big HA VM: %v", err)
	}
	_, err = ta.cli.CreateVMOn(ctx, big("ha-b"), true, "hostb")
	if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "admission") {
		t.Fatalf("the second big HA VM, whose start leaves no room for failover: %v", err)
	}
	if _, err := ta.cli.CreateVMOn(ctx, big("ha-b"), false, "hostb"); err != nil {
		t.Fatalf("defining it without a start: %v", err)
	}
	if _, _, err := tb.vms.Act(ctx, service.Action{Name: "ha-b", Action: "start"}); err == nil || !strings.Contains(err.Error(), "admission") {
		t.Errorf("starting it: %v", err)
	}
	if _, err := ta.cli.PutSettings(ctx, api.ClusterSettings{HAAdmission: api.AdmissionWarn}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.vms.Act(ctx, service.Action{Name: "ha-b", Action: "start"}); err != nil {
		t.Errorf("starting it with policy warn: %v", err)
	}
}
