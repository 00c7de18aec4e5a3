package hatest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/lab/labtest"
)

// TestCPUBaseline: in a cluster whose lab3 lacks AVX2, a VM started on
// lab1 gets the cluster's CPU baseline (no AVX2) and live-migrates to
// lab3; a VM given its host's CPU (cpu: host) has AVX2, and its migration
// to lab3 is refused, naming the feature.
func TestCPUBaseline(t *testing.T) {
	c := &cluster{t: t, st: labtest.Up(t, labtest.Config{Hosts: 3, Net: 14, CPUModels: []string{"EPYC", "EPYC", "EPYC,-avx2"}})}
	c.haVM("lab1", "base", false, "")
	c.haVM("lab1", "pinned", false, "cpu: host\n")
	for _, name := range []string{"base", "pinned"} {
		c.waitRunning("lab2", name, "lab1", 2*time.Minute)
	}
	features := func(name string) []string {
		v, err := c.vm("lab2", name)
		if err != nil {
			t.Fatal(err)
		}
		return v.Status.CPUFeatures
	}
	if f := features("base"); slices.Contains(f, "avx2") || !slices.Contains(f, "sse2") {
		t.Errorf("the baseline VM's CPU features %v: want sse2 and no avx2 (lab3 lacks it)", f)
	}
	if f := features("pinned"); !slices.Contains(f, "avx2") {
		t.Errorf("the host-CPU VM's CPU features %v: want lab1's avx2", f)
	}

	out, err := c.gv("lab1", "vm", "migrate", "pinned", "--to", "lab3")
	if err == nil || !strings.Contains(out, "avx2") {
		t.Errorf("migrating the host-CPU VM to lab3 (no avx2): %v\n%s", err, out)
	}
	n := c.consoleCount("lab1", "base")
	c.mustGV("lab1", "vm", "migrate", "base", "--to", "lab3")
	v, err := c.vm("lab2", "base")
	if err != nil || v.Host != "lab3" || v.Status.State != api.StateRunning {
		t.Fatalf("base after its migration to lab3: %+v %v", v, err)
	}
	if f := v.Status.CPUFeatures; slices.Contains(f, "avx2") || !slices.Contains(f, "sse2") {
		t.Errorf("the baseline VM's CPU features after the migration: %v", f)
	}
	for deadline := time.Now().Add(30 * time.Second); c.consoleCount("lab3", "base") == 0; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			con, _ := c.gv("lab3", "vm", "console", "--log", "base")
			t.Fatalf("base's guest does not print on lab3 (it printed %d lines on lab1):\n%s", n, con)
		}
	}
	if con, _ := c.gv("lab3", "vm", "console", "--log", "base"); strings.Contains(con, "HA-ALIVE 1\n") {
		t.Errorf("base booted afresh on lab3:\n%s", con)
	}
}
