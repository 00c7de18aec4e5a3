package agent

import (
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
	"github.com/govisor/govisor/internal/hostcpu"
)

func TestCheckCPUJoin(t *testing.T) {
	amd := func(f ...string) *store.HostCPU { return &store.HostCPU{Vendor: "AuthenticAMD", Features: f} }
	confs := map[string]store.HostConfig{
		"h1": {CPU: amd("sse2", "avx", "avx2")},
		"h2": {CPU: amd("sse2", "avx", "avx2")},
		"h3": {Maintenance: true}, // no CPU recorded: not counted
	}
	vm := func(name string, st api.State, f ...string) store.Record {
		var r store.Record
		r.Desired.Spec.Name = name
		r.Status = &api.VMStatus{State: st, Host: "h1", CPUFeatures: f}
		return r
	}
	recs := []store.Record{
		vm("web", api.StateRunning, "sse2", "avx", "avx2"),
		vm("old", api.StateStopped, "sse2", "avx", "avx2", "avx512f"),
		vm("db", api.StateRunning, "sse2", "avx"),
	}
	cases := []struct {
		name string
		cpu  hostcpu.CPU
		want string // "" joins
	}{
		{"same CPU", hostcpu.CPU{Vendor: "AuthenticAMD", Features: []string{"sse2", "avx", "avx2"}}, ""},
		{"more features", hostcpu.CPU{Vendor: "AuthenticAMD", Features: []string{"sse2", "avx", "avx2", "avx512f"}}, ""},
		{"lacks what web uses", hostcpu.CPU{Vendor: "AuthenticAMD", Features: []string{"sse2", "avx"}}, "lacks avx2, which running VMs use (avx2: web)"},
		{"other vendor", hostcpu.CPU{Vendor: "GenuineIntel", Features: []string{"sse2", "avx", "avx2"}}, "mix CPU vendors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkCPUJoin("h4", c.cpu, confs, recs)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	// A host rejoining with its own recorded CPU is not compared with itself.
	if err := checkCPUJoin("h1", hostcpu.CPU{Vendor: "AuthenticAMD", Features: []string{"sse2", "avx", "avx2"}}, confs, recs); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
}
