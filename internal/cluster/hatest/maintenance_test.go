package hatest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/lab/labtest"
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
func TestMaintenanceEvacuates(t *testing.T) {
	c := &cluster{t: t, st: labtest.Up(t, labtest.Config{Hosts: 3, Net: 13})}
	for _, name := range []string{"m1", "m2"} {
		c.haVM("lab1", name, false, "")
	}
	for _, name := range []string{"m1", "m2"} {
		c.waitRunning("lab2", name, "lab1", 2*time.Minute)
	}
	t0 := time.Now()
	out := c.mustGV("lab2", "host", "maintenance", "enter", "lab1", "--wait", "5m")
	t.Logf("lab1 in maintenance after %.1f s:\n%s", time.Since(t0).Seconds(), out)
	for _, name := range []string{"m1", "m2"} {
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
