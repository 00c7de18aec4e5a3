package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
)

// TestTwoVMsAdoptedAcrossAgentRestart is the agent's main story: two VMs
// created through the API run as VMM children, show their consoles and
// metrics, survive a restart of the agent (adopted, same pids), then stop
// and are deleted.
func TestTwoVMsAdoptedAcrossAgentRestart(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin })
	ctx := context.Background()

	var evMu sync.Mutex
	var events []api.Event
	evCtx, evCancel := context.WithCancel(ctx)
	evDone := make(chan struct{})
	go func() {
		defer close(evDone)
		ta.cli.Events(evCtx, 0, func(e api.Event) error {
			evMu.Lock()
			events = append(events, e)
			evMu.Unlock()
			return nil
		})
	}()

	pids := map[string]int{}
	for _, name := range []string{"alpha", "beta"} {
		k := writeGuest(t, dir, name+".elf", idleGuest("UP-"+name+"\n"))
		v, err := ta.cli.CreateVM(ctx, spec(name, k, api.RestartNever), true)
		if err != nil {
			t.Fatal(err)
		}
		if v.Desired != api.PowerRunning || v.Host != "testhost" || v.Spec.Cmdline != defaultCmdline {
			t.Fatalf("created %+v", v)
		}
	}
	for _, name := range []string{"alpha", "beta"} {
		v := waitVM(t, ta.cli, name, "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })
		if !alive(v.Status.PID) || node.Argv0(v.Status.PID) != node.Marker(ta.id, name) {
			t.Fatalf("%s: pid %d is not a live VMM of ours (argv0 %q)", name, v.Status.PID, node.Argv0(v.Status.PID))
		}
		pids[name] = v.Status.PID
		deadline := time.Now().Add(30 * time.Second)
		for {
			con, err := ta.cli.Console(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(con, []byte("UP-"+name)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s console: %q", name, con)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if pids["alpha"] == pids["beta"] {
		t.Fatal("two VMs share one VMM process")
	}

	// A Prometheus scrape, parsed as Prometheus parses it.
	text, err := ta.cli.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	gauge := func(fam, label, value string) float64 {
		f := fams[fam]
		if f == nil {
			t.Fatalf("no %s in /metrics", fam)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no %s{%s=%q}", fam, label, value)
		return 0
	}
	if n := gauge("govisor_vms", "state", "running"); n != 2 {
		t.Errorf("govisor_vms{state=running} = %v, want 2", n)
	}
	if n := gauge("govisor_vm_up", "vm", "alpha"); n != 1 {
		t.Errorf("govisor_vm_up{vm=alpha} = %v", n)
	}
	if n := gauge("govisor_vm_restarts_total", "vm", "beta"); n != 0 {
		t.Errorf("govisor_vm_restarts_total{vm=beta} = %v", n)
	}
	if n := gauge("govisor_vm_resident_memory_bytes", "vm", "alpha"); n < 1<<20 {
		t.Errorf("govisor_vm_resident_memory_bytes{vm=alpha} = %v, want at least 1 MiB", n)
	}
	if n := gauge("govisor_vm_cpu_seconds_total", "vm", "beta"); n < 0 {
		t.Errorf("govisor_vm_cpu_seconds_total{vm=beta} = %v", n)
	}
	if n := gauge("govisor_agent_info", "host", "testhost"); n != 1 {
		t.Errorf("govisor_agent_info = %v", n)
	}
	// The VMM's own counters: the guests' console output took I/O exits.
	var ioExits float64
	for _, m := range fams["govisor_vm_exits_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["vm"] == "alpha" && labels["reason"] == "IO" {
			ioExits = m.GetCounter().GetValue()
		}
	}
	if ioExits < float64(len("UP-alpha")) {
		t.Errorf("govisor_vm_exits_total{vm=alpha,reason=IO} = %v, want at least one per console byte", ioExits)
	}

	// Restart the agent: the VMMs keep running and are adopted.
	evCancel()
	<-evDone
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if !alive(pid) {
			t.Fatalf("%s (pid %d) died with the agent", name, pid)
		}
	}
	ta = startAgent(t, dir, func(c *Config) { c.Executable = bin })
	defer ta.Shutdown(ctx)
	for name, pid := range pids {
		v, err := ta.cli.GetVM(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status.State != api.StateRunning || v.Status.PID != pid || v.Status.Restarts != 0 {
			t.Fatalf("%s after agent restart: %+v, want running as pid %d", name, v.Status, pid)
		}
		p := ta.node.Proc(name)
		if p == nil || p.PID != pid || !p.Adopted() {
			t.Fatalf("%s not adopted: %+v", name, p)
		}
	}
	// A few reconcile passes later nothing was started twice.
	time.Sleep(600 * time.Millisecond)
	if found := node.FindVMMs(ta.id); len(found["alpha"]) != 1 || len(found["beta"]) != 1 {
		t.Fatalf("VMM processes after adoption: %v", found)
	}

	// Delete refuses a running VM.
	if err := ta.cli.DeleteVM(ctx, "beta"); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("delete running VM: %v, want 409", err)
	}
	v, err := ta.cli.Action(ctx, "alpha", "stop", 30*time.Second)
	if err != nil || v.Status.State != api.StateStopped || !strings.Contains(v.Status.ExitReason, "stopped on request") {
		t.Fatalf("stop alpha: %+v, %v", v.Status, err)
	}
	v, err = ta.cli.Action(ctx, "beta", "force-stop", 30*time.Second)
	if err != nil || v.Status.State != api.StateStopped {
		t.Fatalf("force-stop beta: %+v, %v", v.Status, err)
	}
	for name, pid := range pids {
		deadline := time.Now().Add(10 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			t.Fatalf("%s: VMM %d still alive after stop", name, pid)
		}
		if err := ta.cli.DeleteVM(ctx, name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		if _, err := ta.cli.GetVM(ctx, name); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("get deleted %s: %v, want 404", name, err)
		}
	}

	evMu.Lock()
	defer evMu.Unlock()
	sawRunning := map[string]bool{}
	for _, e := range events {
		if e.Type == "status" && e.Status.State == api.StateRunning {
			sawRunning[e.VM] = true
		}
	}
	if !sawRunning["alpha"] || !sawRunning["beta"] {
		t.Errorf("events stream missed running states: %+v", events)
	}
}
