package hatest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/lab"
)

// busyVM defines a VM on host whose guest keeps its one vCPU busy, with a
// disk on the shared pool (so that the balancer can move it without
// mirroring).
func (c *cluster) busyVM(host, name string) {
	c.t.Helper()
	c.mustGV(host, "volume", "create", lab.SharedPool+"/"+name+".qcow2", "--size", "16M")
	spec := fmt.Sprintf(`name: %s
cpus: 1
memory: 128M
kernel: /guest/bzImage
initrd: /guest/initrd.cpio
cmdline: 'console=ttyS0 quiet rodata=off run="echo HA-ALIVE 0; while :; do :; done"'
disks:
  - pool: %s
    volume: %s.qcow2
`, name, lab.SharedPool, name)
	c.put(host, "/tmp/"+name+".yaml", spec)
	c.mustGV(host, "vm", "create", "-f", "/tmp/"+name+".yaml")
}

// TestAutomaticBalance: three busy VMs on lab1 of an otherwise idle 3-host
// cluster; with the load balancer in automatic mode the leader live-
// migrates VMs away until the hosts' measured loads are within the band,
// each move an event with its reason. It logs the time to the band and
// the migrations used (bench/balance runs it).
func TestAutomaticBalance(t *testing.T) {
	c := &cluster{t: t, st: sharedLab.Take(t)}
	vms := []string{"b1", "b2", "b3"}
	c.removeVMs(vms...)
	t.Cleanup(func() {
		// The next test on this lab expects its VMs to stay put.
		if out, err := c.gv("lab2", "cluster", "settings", "--balance", "off"); err != nil && !t.Failed() {
			t.Errorf("clean up: balance off: %v\n%s", err, out)
		}
	})
	for _, name := range vms {
		c.busyVM("lab1", name)
	}
	for _, name := range vms {
		c.waitRunning("lab2", name, "lab1", 2*time.Minute)
	}
	t0 := time.Now()
	c.mustGV("lab2", "cluster", "settings", "--balance", "automatic", "--balance-threshold", "0.25")
	var p api.BalancePlan
	var last string
	for deadline := t0.Add(5 * time.Minute); ; time.Sleep(3 * time.Second) {
		out, err := c.gv("lab2", "cluster", "balance", "-o", "json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &p)
		}
		hosts := map[string]int{}
		for _, name := range vms {
			if v, err := c.vm("lab2", name); err == nil && v.Status.State == api.StateRunning {
				hosts[v.Host]++
			}
		}
		now := fmt.Sprintf("imbalance %.2f (balanced %v), VMs per host %v", p.Before, p.Balanced, hosts)
		if now != last {
			t.Logf("%5.1f s: %s %v", time.Since(t0).Seconds(), now, err)
			last = now
		}
		if err == nil && hosts["lab1"] < len(vms) && p.Before <= p.Threshold && len(hosts) > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not balanced 5 minutes after automatic mode was set: %s", now)
		}
	}
	reached := time.Since(t0)
	var evs api.ClusterEventList
	if err := json.Unmarshal([]byte(c.mustGV("lab3", "cluster", "events", "-n", "0", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	moves := 0
	for _, e := range evs.Items {
		if e.Kind == api.EventBalance {
			moves++
			t.Logf("balance event: %s %s -> %s: %s", e.VM, e.From, e.Host, e.Reason)
			if e.Reason == "" || e.From != "lab1" || e.By == "" {
				t.Errorf("balance event without its reason or hosts: %+v", e)
			}
		}
	}
	if moves == 0 {
		t.Fatalf("balanced without a balance migration: %+v", evs.Items)
	}
	// The moved guests run on: live-migrated, not booted afresh.
	for _, name := range vms {
		v, err := c.vm("lab2", name)
		if err != nil || v.Host == "lab1" {
			continue
		}
		if con, _ := c.gv(v.Host, "vm", "console", "--log", name); strings.Contains(con, "HA-ALIVE 0") {
			t.Errorf("%s booted afresh on %s", name, v.Host)
		}
	}
	t.Logf("balanced: from 3/0/0 to the band in %.1f s with %d live migrations", reached.Seconds(), moves)
}
