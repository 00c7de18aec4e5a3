package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/hostnet/hostnettest"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestLinuxPingThroughBridge boots Linux through the agent, in a network
// namespace the test makes, with a NIC on a network whose bridge has a
// link-local address: the guest pings the host across TAP and bridge.
func TestLinuxPingThroughBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Linux: minutes on kvm_pvm")
	}
	if !hostnettest.Enter(t) {
		return
	}
	kernel, initrd := kvmtest.LinuxGuest(t)
	dir := t.TempDir()
	bin := govisorBin(t)
	ta := startAgent(t, filepath.Join(dir, "state"), func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(context.Background())
	ctx := context.Background()
	if _, err := ta.cli.CreateNetwork(ctx, api.Network{Name: "lan", CIDR: "169.254.60.1/16"}); err != nil {
		t.Fatal(err)
	}
	script := "ip link set eth0 up && ip addr add 169.254.60.2/16 dev eth0 && ping -c 3 -W 10 169.254.60.1 && echo PING-OK"
	s := api.VMSpec{Name: "pinger", Memory: "256M", Kernel: kernel, Initrd: initrd, RestartPolicy: api.RestartNever,
		Cmdline: kvmtest.LinuxCmdline + ` run="` + script + `"`, NICs: []api.NICSpec{{Network: "lan"}}}
	if _, err := ta.cli.CreateVM(ctx, s, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Minute)
	for {
		con, err := ta.cli.Console(ctx, "pinger")
		if err == nil && strings.Contains(string(con), "PING-OK") {
			return
		}
		v, _ := ta.cli.GetVM(ctx, "pinger")
		if time.Now().After(deadline) || v.Status.State == api.StateFailed || v.Status.State == api.StateStopped {
			t.Fatalf("no PING-OK (state %s, %s); console:\n%s", v.Status.State, v.Status.ExitReason, con)
		}
		time.Sleep(time.Second)
	}
}
