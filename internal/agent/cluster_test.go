package agent

import (
	"context"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store/storetest"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestThreeMemberEtcdLosesLeader runs the agent against a 3-member etcd
// cluster and kills the leader while a VM runs: the agent keeps serving and
// reconciling through the remaining quorum.
func TestThreeMemberEtcdLosesLeader(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	cl := storetest.StartCluster(t, 3)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin; c.EtcdEndpoints = cl.Endpoints })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	k := writeGuest(t, dir, "idle.elf", idleGuest("UP\n"))
	if _, err := ta.cli.CreateVM(ctx, spec("ha1", k, api.RestartOnFailure), true); err != nil {
		t.Fatal(err)
	}
	v := waitVM(t, ta.cli, "ha1", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })

	leader := -1
	for deadline := time.Now().Add(10 * time.Second); leader < 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		leader = cl.Leader()
	}
	if leader < 0 {
		t.Fatal("the cluster has no leader")
	}
	cl.Kill(leader)

	// Through the two survivors: the VM is still running, a stop goes
	// through the reconciler, and a new VM can be created.
	if got := waitVM(t, ta.cli, "ha1", "still running", func(v api.VM) bool { return v.Status.State == api.StateRunning }); got.Status.PID != v.Status.PID {
		t.Fatalf("pid changed from %d to %d after losing an etcd member", v.Status.PID, got.Status.PID)
	}
	if _, err := ta.cli.Action(ctx, "ha1", "stop", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "ha1", "stopped", func(v api.VM) bool { return v.Status.State == api.StateStopped })
	if alive(v.Status.PID) {
		t.Fatalf("VMM %d still alive after stop", v.Status.PID)
	}
	if _, err := ta.cli.CreateVM(ctx, spec("ha2", k, api.RestartNever), false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ha1", "ha2"} {
		waitVM(t, ta.cli, name, "stopped", func(v api.VM) bool { return v.Status.State == api.StateStopped })
		if err := ta.cli.DeleteVM(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
}
