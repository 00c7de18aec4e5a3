package placement

import (
	"reflect"
	"testing"
)

// lab is a three-host cluster: lab1 (zone a, avx2), lab2 (zone b, a GPU,
// avx2 and avx512f), lab3 in maintenance; a shared pool and a dir pool on
// lab1.
func lab() Cluster {
	cpu := func(f ...string) CPU { return CPU{Vendor: "GenuineIntel", Model: "Skylake", Features: f} }
	return Cluster{
		Hosts: []Host{
			{Name: "lab2", State: HostReady, CPUs: 4, MemoryMiB: 4096, Labels: map[string]string{"zone": "b", "gpu": "a100"}, CPU: cpu("sse4_2", "avx2", "avx512f")},
			{Name: "lab1", State: HostReady, CPUs: 4, MemoryMiB: 4096, Labels: map[string]string{"zone": "a"}, CPU: cpu("sse4_2", "avx2")},
			{Name: "lab3", State: HostMaintenance, CPUs: 8, MemoryMiB: 8192, CPU: cpu("sse4_2")},
		},
		Pools: []Pool{{Name: "nfs", Shared: true}, {Name: "local1", Host: "lab1"}},
	}
}

func TestFilters(t *testing.T) {
	small := VM{Name: "new", CPUs: 1, MemoryMiB: 1024}
	with := func(f func(*VM)) VM { vm := small; f(&vm); return vm }
	for _, tc := range []struct {
		name    string
		cfg     Config
		state   func(*Cluster)
		vm      VM
		host    string
		filters []Filter
		reasons []string // nil: the host takes the VM
	}{
		{name: "fits", vm: small, host: "lab1"},
		{name: "maintenance", vm: small, host: "lab3", filters: []Filter{FilterState}, reasons: []string{"host is in maintenance (only ready hosts take VMs)"}},
		{name: "fenced", state: func(c *Cluster) { c.Hosts[0].State = HostFenced }, vm: small, host: "lab2",
			filters: []Filter{FilterState}, reasons: []string{"host is fenced (only ready hosts take VMs)"}},
		{name: "entering maintenance", state: func(c *Cluster) { c.Hosts[0].State = HostEnteringMaintenance }, vm: small, host: "lab2",
			filters: []Filter{FilterState}, reasons: []string{"host is entering maintenance (only ready hosts take VMs)"}},
		{name: "memory", state: func(c *Cluster) { c.VMs = []VM{{Name: "big", Host: "lab2", CPUs: 1, MemoryMiB: 3584}} }, vm: small, host: "lab2",
			filters: []Filter{FilterMemory}, reasons: []string{"512 MiB free of 4096 MiB, VM needs 1024 MiB (memory overcommit 1.0)"}},
		{name: "memory overcommit", cfg: Config{MemoryOvercommit: 1.25}, state: func(c *Cluster) { c.VMs = []VM{{Name: "big", Host: "lab2", CPUs: 1, MemoryMiB: 4608}} },
			vm: small, host: "lab2", filters: []Filter{FilterMemory}, reasons: []string{"512 MiB free of 5120 MiB, VM needs 1024 MiB (memory overcommit 1.25)"}},
		{name: "memory overcommit fits", cfg: Config{MemoryOvercommit: 1.5}, state: func(c *Cluster) { c.VMs = []VM{{Name: "big", Host: "lab2", CPUs: 1, MemoryMiB: 4608}} },
			vm: small, host: "lab2"},
		{name: "cpu", cfg: Config{CPUOvercommit: 1}, state: func(c *Cluster) { c.VMs = []VM{{Name: "busy", Host: "lab1", CPUs: 3, MemoryMiB: 1}} },
			vm: with(func(v *VM) { v.CPUs = 2 }), host: "lab1", filters: []Filter{FilterCPU}, reasons: []string{"1 of 4 vCPUs free (4 CPUs × CPU overcommit 1.0), VM needs 2"}},
		{name: "cpu default overcommit", vm: with(func(v *VM) { v.CPUs = 17 }), host: "lab1",
			filters: []Filter{FilterCPU}, reasons: []string{"16 of 16 vCPUs free (4 CPUs × CPU overcommit 4.0), VM needs 17"}},
		{name: "dir pool elsewhere", vm: with(func(v *VM) { v.Pools = []string{"nfs", "local1"} }), host: "lab2",
			filters: []Filter{FilterStorage}, reasons: []string{"pool local1 is a dir pool on lab1"}},
		{name: "dir pool here", vm: with(func(v *VM) { v.Pools = []string{"nfs", "local1"} }), host: "lab1"},
		{name: "dir pool mirrored", vm: with(func(v *VM) { v.Pools = []string{"local1"}; v.MirrorDisks = true }), host: "lab2"},
		{name: "unknown pool", vm: with(func(v *VM) { v.Pools = []string{"gone"} }), host: "lab1",
			filters: []Filter{FilterStorage}, reasons: []string{"pool gone is not defined"}},
		{name: "features", vm: with(func(v *VM) { v.CPUFeatures = []string{"sha_ni", "avx2", "avx512f"} }), host: "lab1",
			filters: []Filter{FilterCPUModel}, reasons: []string{"CPU lacks avx512f, sha_ni that the VM needs"}},
		{name: "features met", vm: with(func(v *VM) { v.CPUFeatures = []string{"avx512f", "avx2"} }), host: "lab2"},
		{name: "vendor", vm: with(func(v *VM) { v.CPUVendor = "AuthenticAMD" }), host: "lab1",
			filters: []Filter{FilterCPUModel}, reasons: []string{"CPU vendor is GenuineIntel, VM needs AuthenticAMD"}},
		{name: "must", vm: with(func(v *VM) { v.HostRules = []HostRule{{Must, "zone=a"}} }), host: "lab2",
			filters: []Filter{FilterHostRule}, reasons: []string{`labels {gpu=a100, zone=b} do not match rule "must zone=a"`}},
		{name: "must met", vm: with(func(v *VM) { v.HostRules = []HostRule{{Must, "zone=a"}} }), host: "lab1"},
		{name: "must-not", vm: with(func(v *VM) { v.HostRules = []HostRule{{MustNot, "gpu"}} }), host: "lab2",
			filters: []Filter{FilterHostRule}, reasons: []string{`labels {gpu=a100, zone=b} match rule "must-not gpu"`}},
		{name: "should is soft", vm: with(func(v *VM) { v.HostRules = []HostRule{{Should, "zone=a"}, {ShouldNot, "gpu"}} }), host: "lab2"},
		{name: "affinity", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "web1", Host: "lab1", CPUs: 1, MemoryMiB: 1, Affinity: []string{"web"}}}
		},
			vm: with(func(v *VM) { v.Affinity = []string{"web"} }), host: "lab2", filters: []Filter{FilterAffinity}, reasons: []string{"affinity group web runs on lab1 (web1)"}},
		{name: "affinity split", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "web1", Host: "lab1", CPUs: 1, MemoryMiB: 1, Affinity: []string{"web"}}, {Name: "web2", Host: "lab2", CPUs: 1, MemoryMiB: 1, Affinity: []string{"web"}}}
		}, vm: with(func(v *VM) { v.Affinity = []string{"web"} }), host: "lab2", filters: []Filter{FilterAffinity}, reasons: []string{"affinity group web runs on lab1 (web1), lab2 (web2)"}},
		{name: "affinity met", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "web1", Host: "lab1", CPUs: 1, MemoryMiB: 1, Affinity: []string{"web"}}}
		},
			vm: with(func(v *VM) { v.Affinity = []string{"web"} }), host: "lab1"},
		{name: "anti-affinity", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "db2", Host: "lab1", CPUs: 1, MemoryMiB: 1, AntiAffinity: []string{"db"}}, {Name: "db1", Host: "lab1", CPUs: 1, MemoryMiB: 1, AntiAffinity: []string{"db"}}}
		}, vm: with(func(v *VM) { v.AntiAffinity = []string{"db"} }), host: "lab1", filters: []Filter{FilterAntiAffinity}, reasons: []string{"anti-affinity group db: db1, db2 already here"}},
		{name: "anti-affinity met", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "db1", Host: "lab1", CPUs: 1, MemoryMiB: 1, AntiAffinity: []string{"db"}}}
		},
			vm: with(func(v *VM) { v.AntiAffinity = []string{"db"} }), host: "lab2"},
		{name: "itself does not count", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "new", Host: "lab1", CPUs: 1, MemoryMiB: 4096, AntiAffinity: []string{"db"}}}
		}, vm: with(func(v *VM) { v.MemoryMiB = 4096; v.AntiAffinity = []string{"db"} }), host: "lab1"},
		{name: "every reason", state: func(c *Cluster) {
			c.VMs = []VM{{Name: "db1", Host: "lab3", CPUs: 1, MemoryMiB: 1, AntiAffinity: []string{"db"}}}
		},
			vm:   VM{Name: "new", CPUs: 40, MemoryMiB: 9000, Pools: []string{"local1"}, CPUFeatures: []string{"avx2"}, HostRules: []HostRule{{Must, "zone"}}, AntiAffinity: []string{"db"}},
			host: "lab3", filters: []Filter{FilterState, FilterCPU, FilterMemory, FilterStorage, FilterCPUModel, FilterHostRule, FilterAntiAffinity},
			reasons: []string{"host is in maintenance (only ready hosts take VMs)", "31 of 32 vCPUs free (8 CPUs × CPU overcommit 4.0), VM needs 40",
				"8191 MiB free of 8192 MiB, VM needs 9000 MiB (memory overcommit 1.0)", "pool local1 is a dir pool on lab1",
				"CPU lacks avx2 that the VM needs", `labels {} do not match rule "must zone"`, "anti-affinity group db: db1 already here"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := lab()
			if tc.state != nil {
				tc.state(&c)
			}
			s, err := New(c, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			rej, err := s.Check(tc.vm, tc.host)
			if err != nil {
				t.Fatal(err)
			}
			if tc.reasons == nil {
				if rej != nil {
					t.Fatalf("refused: %s", rej)
				}
				return
			}
			if rej == nil {
				t.Fatalf("taken, want refused: %q", tc.reasons)
			}
			if rej.Host != tc.host || !reflect.DeepEqual(rej.Filters, tc.filters) || !reflect.DeepEqual(rej.Reasons, tc.reasons) {
				t.Errorf("got %s %q\n%q\nwant %q\n%q", rej.Host, rej.Filters, rej.Reasons, tc.filters, tc.reasons)
			}
		})
	}
}
