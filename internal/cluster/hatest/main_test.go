package hatest

import (
	"os"
	"testing"

	"github.com/govisor/govisor/internal/lab/labtest"
)

// sharedLab is the 3-host lab the package's tests take in turn (a lab's
// start costs about 40 s of a TCG machine): lab3's CPU lacks AVX2 (for
// TestMaintenanceEvacuates; the others' VMs get the cluster's baseline),
// and the agents' host lease is labLeaseTTL. A test that kills a host
// spends it, and the next test starts a fresh one.
var sharedLab = &labtest.Shared{Config: labtest.Config{Hosts: 3, Net: 11, HostLeaseTTL: labLeaseTTL,
	CPUModels: []string{"EPYC", "EPYC", "EPYC,-avx2"}}}

func TestMain(m *testing.M) {
	code := m.Run()
	sharedLab.Close()
	os.Exit(code)
}

// removeVMs deletes VMs names (and their volumes on the shared pool)
// when the test ends, if it passed, so that the shared lab goes on as the
// test found it; a failed test's lab is taken down anyway.
func (c *cluster) removeVMs(names ...string) {
	c.t.Cleanup(func() {
		if c.t.Failed() {
			return
		}
		for _, name := range names {
			v, err := c.vm("lab1", name)
			if err != nil {
				if v, err = c.vm("lab2", name); err != nil {
					continue // never created
				}
			}
			host := v.Host
			if out, err := c.gv(host, "vm", "stop", name, "--force", "--wait", "1m"); err != nil {
				c.t.Errorf("clean up: stop %s on %s: %v\n%s", name, host, err, out)
				return
			}
			if out, err := c.gv(host, "vm", "delete", name); err != nil {
				c.t.Errorf("clean up: delete %s on %s: %v\n%s", name, host, err, out)
				return
			}
		}
	})
}
