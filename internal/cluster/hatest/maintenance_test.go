package hatest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// consoleCount is how many HA-ALIVE lines VM name's console shows on host.
func (c *cluster) consoleCount(host, name string) int {
	out, err := c.gv(host, "vm", "console", "--log", name)
	if err != nil {
		return 0
	}
	return strings.Count(out, "HA-ALIVE")
}

// TestMaintenanceEvacuates: a host entering maintenance has its running
// VMs live-migrated to the other hosts (their guests go on printing there,
// not booted afresh), takes no new VM, and takes VMs again once it leaves.
// The hosts' CPUs differ (lab3's lacks AVX2): the VMs get the cluster's
// CPU baseline and may go anywhere, but one given its host's CPU (cpu:
// host) can go only to lab2, by hand (a migration to lab3 is refused,
// naming the feature) and by the evacuation alike.
func TestMaintenanceEvacuates(t *testing.T) {
	c := &cluster{t: t, st: sharedLab.Take(t)}
	c.removeVMs("m1", "m2", "pinned", "new1")
	for _, name := range []string{"m1", "m2"} {
		c.haVM("lab1", name, false, "")
	}
	c.haVM("lab1", "pinned", false, "cpu: host\n")
	for _, name := range []string{"m1", "m2", "pinned"} {
		c.waitRunning("lab2", name, "lab1", 2*time.Minute)
	}
	features := func(name string) []string {
		v, err := c.vm("lab2", name)
		if err != nil {
			t.Fatal(err)
		}
		return v.Status.CPUFeatures
	}
	if f := features("m1"); slices.Contains(f, "avx2") || !slices.Contains(f, "sse2") {
		t.Errorf("the baseline VM's CPU features %v: want sse2 and no avx2 (lab3 lacks it)", f)
	}
	if f := features("pinned"); !slices.Contains(f, "avx2") {
		t.Errorf("the host-CPU VM's CPU features %v: want lab1's avx2", f)
	}
	if out, err := c.gv("lab1", "vm", "migrate", "pinned", "--to", "lab3"); err == nil || !strings.Contains(out, "avx2") {
		t.Errorf("migrating the host-CPU VM to lab3 (no avx2): %v\n%s", err, out)
	}
	t0 := time.Now()
	out := c.mustGV("lab2", "host", "maintenance", "enter", "lab1", "--wait", "5m")
	t.Logf("lab1 in maintenance after %.1f s:\n%s", time.Since(t0).Seconds(), out)
	if v, err := c.vm("lab2", "pinned"); err != nil || v.Host != "lab2" {
		t.Errorf("the host-CPU VM went to %q (%v): only lab2 has lab1's avx2", v.Host, err)
	}
	for _, name := range []string{"m1", "m2", "pinned"} {
		v, err := c.vm("lab2", name)
		if err != nil || v.Host == "lab1" || v.Status.State != api.StateRunning || v.Status.Host != v.Host {
			t.Fatalf("%s after the evacuation: %+v %v", name, v, err)
		}
		// Live-migrated, not restarted: the guest's counter goes on where it
		// was (its console on the new host starts with the migrated guest's
		// next lines, never a boot).
		con, _ := c.gv(v.Host, "vm", "console", "--log", name)
		if strings.Contains(con, "HA-ALIVE 1\n") {
			t.Errorf("%s booted afresh on %s:\n%s", name, v.Host, con)
		}
		n := c.consoleCount(v.Host, name)
		time.Sleep(3 * time.Second)
		if c.consoleCount(v.Host, name) <= n {
			t.Errorf("%s's guest does not print on %s after the migration", name, v.Host)
		}
	}
	var hl api.HostList
	if err := json.Unmarshal([]byte(c.mustGV("lab3", "host", "list", "-o", "json")), &hl); err != nil {
		t.Fatal(err)
	}
	for _, h := range hl.Items {
		if h.Name == "lab1" && h.State != api.HostMaintenance {
			t.Errorf("lab1 is %q", h.State)
		}
	}
	// No new VM there: placement skips it, and lab1's own agent refuses.
	c.put("lab1", "/tmp/new.yaml", "name: new1\nmemory: 64M\nkernel: /guest/bzImage\ninitrd: /guest/initrd.cpio\n")
	if out, err := c.gv("lab1", "vm", "create", "-f", "/tmp/new.yaml", "--no-start"); err == nil {
		t.Errorf("lab1 in maintenance took a new VM: %s", out)
	}
	out = c.mustGV("lab1", "vm", "create", "-f", "/tmp/new.yaml", "--no-start", "--host", "auto")
	if strings.Contains(out, "on lab1") {
		t.Errorf("placement put a new VM on lab1 in maintenance: %s", out)
	}
	out = c.mustGV("lab3", "host", "maintenance", "exit", "lab1")
	if !strings.Contains(out, "ready") {
		t.Errorf("after exit: %s", out)
	}
}

// TestLeaderKilledMidEvacuation: the cluster's leader loses power while
// it evacuates a host entering maintenance. A new leader is elected among
// the survivors and carries on: the host ends in maintenance with every
// VM running on the surviving host (a migration cut short by the kill
// leaves its VM running where it was, to be moved again; an HA VM that had
// already reached the dead leader is restarted by HA), and the evacuation
// events after the kill are the new leader's.
func TestLeaderKilledMidEvacuation(t *testing.T) {
	c := &cluster{t: t, st: sharedLab.Take(t)}
	var hl api.HostList
	if err := json.Unmarshal([]byte(c.mustGV("lab1", "host", "list", "-o", "json")), &hl); err != nil {
		t.Fatal(err)
	}
	leader := ""
	for _, h := range hl.Items {
		if h.Leader {
			leader = h.Name
		}
	}
	var others []string
	for _, h := range []string{"lab1", "lab2", "lab3"} {
		if h != leader {
			others = append(others, h)
		}
	}
	if leader == "" || len(others) != 2 {
		t.Fatalf("no leader among lab1-3: %+v", hl.Items)
	}
	evacuate, survivor := others[0], others[1]
	t.Logf("leader %s; evacuating %s; %s survives", leader, evacuate, survivor)
	vms := []string{"e1", "e2", "e3"}
	for _, name := range vms {
		c.haVM(evacuate, name, true, "")
	}
	for _, name := range vms {
		c.waitRunning(survivor, name, evacuate, 2*time.Minute)
	}
	c.mustGV(survivor, "host", "maintenance", "enter", evacuate)
	// Kill the leader once its controller has started moving VMs.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		started := false
		for _, name := range vms {
			if v, err := c.vm(survivor, name); err == nil && (v.Status.Migration != nil || v.Host != evacuate) {
				started = true
			}
		}
		if started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader started no migration off the host in maintenance in a minute")
		}
	}
	killed := time.Now()
	sharedLab.Spend(t)
	if err := c.st.Kill(leader); err != nil {
		t.Fatal(err)
	}
	var last string
	for deadline := time.Now().Add(4 * time.Minute); ; time.Sleep(time.Second) {
		var state string
		if err := json.Unmarshal([]byte(c.mustGV(survivor, "host", "list", "-o", "json")), &hl); err == nil {
			for _, h := range hl.Items {
				if h.Name == evacuate {
					state = h.State + " " + strings.Join(h.Stuck, "; ")
				}
			}
		}
		done := strings.HasPrefix(state, api.HostMaintenance+" ")
		where := ""
		for _, name := range vms {
			v, err := c.vm(survivor, name)
			where += fmt.Sprintf(" %s:%s/%s", name, v.Host, v.Status.State)
			if err != nil || v.Host != survivor || v.Status.State != api.StateRunning {
				done = false
			}
		}
		if now := state + where; now != last {
			t.Logf("%5.1f s after the kill: %s is %s;%s", time.Since(killed).Seconds(), evacuate, state, where)
			last = now
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("4 minutes after the leader died the evacuation did not finish: %s is %s;%s", evacuate, state, where)
		}
	}
	for _, name := range vms {
		for deadline := time.Now().Add(30 * time.Second); !c.aliveOn(survivor, name); time.Sleep(time.Second) {
			if time.Now().After(deadline) {
				t.Errorf("%s's guest does not print on %s", name, survivor)
				break
			}
		}
	}
	var evs api.ClusterEventList
	if err := json.Unmarshal([]byte(c.mustGV(survivor, "cluster", "events", "-n", "0", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	newLeader := false
	for _, e := range evs.Items {
		t.Logf("event %s %s by %s: %s", e.Time.Format("15:04:05.0"), e.Kind, e.By, e.Reason)
		if e.Time.After(killed) && e.By != leader && (e.Kind == api.EventEvacuation || e.Kind == api.EventHARestart) {
			newLeader = true
		}
	}
	if !newLeader {
		t.Errorf("no evacuation or HA restart by a new leader after %s died", leader)
	}
}
