package placement

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// equalHosts is n ready hosts of 8 CPUs and 8 GiB named h1..hn, with the
// zone labels a, b, a, b...
func equalHosts(n int) Cluster {
	var c Cluster
	for i := range n {
		c.Hosts = append(c.Hosts, Host{Name: "h" + string(rune('1'+i)), State: HostReady, CPUs: 8, MemoryMiB: 8192,
			Labels: map[string]string{"zone": string(rune('a' + i%2))}})
	}
	return c
}

func mustNew(t *testing.T, c Cluster, cfg Config) *State {
	t.Helper()
	s, err := New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestScorers(t *testing.T) {
	base := func() Cluster {
		c := equalHosts(3)
		c.VMs = []VM{
			{Name: "a", Host: "h1", CPUs: 1, MemoryMiB: 4096},
			{Name: "b", Host: "h2", CPUs: 1, MemoryMiB: 2048},
			{Name: "c", Host: "h3", CPUs: 30, MemoryMiB: 1024}, // h3 is loaded by vCPUs, its binding dimension
		}
		return c
	}
	vm := VM{Name: "new", CPUs: 1, MemoryMiB: 1024}
	for _, tc := range []struct {
		name string
		cfg  Config
		vm   VM
		want string
	}{
		{"spread: least loaded by the binding dimension", Config{}, vm, "h2"},
		{"pack: most loaded that fits", Config{Strategy: Pack}, vm, "h3"},
		{"pack: the full one does not fit", Config{Strategy: Pack}, VM{Name: "new", CPUs: 3, MemoryMiB: 1024}, "h1"},
		{"should beats load", Config{}, VM{Name: "new", CPUs: 1, MemoryMiB: 1024, HostRules: []HostRule{{Should, "zone=a"}}}, "h1"},
		{"should-not", Config{Strategy: Pack}, VM{Name: "new", CPUs: 1, MemoryMiB: 1024, HostRules: []HostRule{{ShouldNot, "zone=a"}}}, "h2"},
		{"should where it cannot fit", Config{}, VM{Name: "new", CPUs: 1, MemoryMiB: 1024, HostRules: []HostRule{{Should, "zone=c"}}}, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustNew(t, base(), tc.cfg)
			got, err := s.Choose(tc.vm)
			if err != nil || got != tc.want {
				t.Errorf("Choose = %q, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestTieBreakByName(t *testing.T) {
	c := equalHosts(4)
	c.Hosts[0], c.Hosts[3] = c.Hosts[3], c.Hosts[0] // input order does not matter
	for _, st := range []Strategy{Spread, Pack} {
		s := mustNew(t, c, Config{Strategy: st})
		var got []string
		for _, n := range []string{"v1", "v2", "v3", "v4"} {
			h, err := s.Place(VM{Name: n, CPUs: 1, MemoryMiB: 1024})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, h)
		}
		want := map[Strategy][]string{Spread: {"h1", "h2", "h3", "h4"}, Pack: {"h1", "h1", "h1", "h1"}}[st]
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", st, got, want)
		}
	}
}

func TestNoHostError(t *testing.T) {
	c := lab()
	c.VMs = []VM{{Name: "big", Host: "lab2", CPUs: 1, MemoryMiB: 3584}}
	s := mustNew(t, c, Config{})
	vm := VM{Name: "web1", CPUs: 2, MemoryMiB: 1024, HostRules: []HostRule{{MustNot, "zone=a"}}}
	_, err := s.Place(vm)
	if !errors.Is(err, ErrNoHost) {
		t.Fatalf("err = %v, want ErrNoHost", err)
	}
	want := `placement: vm web1 (2 vCPUs, 1024 MiB) fits none of the 3 hosts:
  lab1: labels {zone=a} match rule "must-not zone=a"
  lab2: 512 MiB free of 4096 MiB, VM needs 1024 MiB (memory overcommit 1.0)
  lab3: host is in maintenance (only ready hosts take VMs)
to fix: bring a host back to ready (or out of maintenance); free or add memory (stop a VM, add a host) or raise the memory overcommit; relax the VM's host rules or label more hosts`
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	var nh *NoHostError
	if !errors.As(err, &nh) || !reflect.DeepEqual(nh.Count(), map[Filter]int{FilterHostRule: 1, FilterMemory: 1, FilterState: 1}) {
		t.Errorf("Count = %v", nh.Count())
	}
	empty := mustNew(t, Cluster{}, Config{})
	if _, err := empty.Place(vm); err == nil || err.Error() != "placement: vm web1 fits no host: there is no other host: add a host" {
		t.Errorf("no hosts: %v", err)
	}
}

func TestPlaceFailureKeepsTheVM(t *testing.T) {
	c := equalHosts(2)
	c.VMs = []VM{{Name: "a", Host: "h1", CPUs: 1, MemoryMiB: 1024}}
	s := mustNew(t, c, Config{})
	if _, err := s.Place(VM{Name: "a", CPUs: 1, MemoryMiB: 99999}); !errors.Is(err, ErrNoHost) {
		t.Fatalf("err = %v", err)
	}
	if vm, ok := s.VM("a"); !ok || vm.Host != "h1" || vm.MemoryMiB != 1024 {
		t.Errorf("a after a failed move: %+v %v", vm, ok)
	}
	if u, _ := s.Usage("h1"); u.MemoryMiB != 1024 {
		t.Errorf("h1 usage %+v", u)
	}
	// Place moves a placed VM: spread sends it to the empty host.
	if h, err := s.Place(VM{Name: "b", CPUs: 1, MemoryMiB: 2048}); err != nil || h != "h2" {
		t.Fatalf("b: %s %v", h, err)
	}
	if h, err := s.Place(VM{Name: "a", CPUs: 1, MemoryMiB: 1024}); err != nil || h != "h1" {
		t.Errorf("a re-placed on %s, %v", h, err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		c    Cluster
		cfg  Config
		want string
	}{
		{Cluster{Hosts: []Host{{Name: "a"}, {Name: "a"}}}, Config{}, "host a is listed twice: list each host once"},
		{Cluster{Hosts: []Host{{}}}, Config{}, "a host has no name: name every host"},
		{Cluster{Hosts: []Host{{Name: "a", CPUs: -1}}}, Config{}, "host a has -1 CPUs"},
		{Cluster{Pools: []Pool{{Name: "p"}}}, Config{}, "dir pool p has no host: set the host it lives on, or mark it shared"},
		{Cluster{Pools: []Pool{{Name: "p", Shared: true}, {Name: "p", Shared: true}}}, Config{}, `pool "p" is unnamed or listed twice`},
		{Cluster{VMs: []VM{{Name: "v", Host: "x", CPUs: 1, MemoryMiB: 1}}}, Config{}, `vm v is on host "x", which is not in the cluster: add the host or clear the VM's host`},
		{Cluster{Hosts: []Host{{Name: "a"}}, VMs: []VM{{Name: "v", Host: "a", MemoryMiB: 1}}}, Config{}, "vm v has 0 vCPUs: give it at least 1"},
		{Cluster{Hosts: []Host{{Name: "a"}}, VMs: []VM{{Name: "v", Host: "a", CPUs: 1}}}, Config{}, "vm v has no memory: give it a memory size"},
		{Cluster{Hosts: []Host{{Name: "a"}}, VMs: []VM{{Name: "v", Host: "a", CPUs: 1, MemoryMiB: 1}, {Name: "v", Host: "a", CPUs: 1, MemoryMiB: 1}}}, Config{}, "vm v is listed twice"},
		{Cluster{Hosts: []Host{{Name: "a"}}, VMs: []VM{{Name: "v", Host: "a", CPUs: 1, MemoryMiB: 1, HostRules: []HostRule{{"may", "x"}}}}}, Config{}, `vm v: host rule "may x": kind "may"`},
		{Cluster{Hosts: []Host{{Name: "a"}}, VMs: []VM{{Name: "v", Host: "a", CPUs: 1, MemoryMiB: 1, HostRules: []HostRule{{Must, "x=="}}}}}, Config{}, `vm v: placement: selector "x=="`},
		{Cluster{}, Config{Strategy: "random"}, `strategy "random": use "spread" or "pack"`},
		{Cluster{}, Config{CPUOvercommit: -1}, "overcommit ratio -1: give a ratio above 0"},
	} {
		_, err := New(tc.c, tc.cfg)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want ErrInvalid with %q", err, tc.want)
		}
	}
}

func TestBatch(t *testing.T) {
	c := equalHosts(3)
	c.Hosts[0].State = HostFenced
	c.VMs = []VM{
		{Name: "low", Host: "h1", CPUs: 1, MemoryMiB: 7800, HA: true},
		{Name: "high", Host: "h1", CPUs: 1, MemoryMiB: 6144, HA: true, Priority: 10},
		{Name: "db1", Host: "h1", CPUs: 1, MemoryMiB: 512, AntiAffinity: []string{"db"}, Priority: 5},
		{Name: "db2", Host: "h1", CPUs: 1, MemoryMiB: 512, AntiAffinity: []string{"db"}, Priority: 5},
		{Name: "web1", Host: "h1", CPUs: 1, MemoryMiB: 256, Affinity: []string{"web"}},
		{Name: "web2", Host: "h1", CPUs: 1, MemoryMiB: 256, Affinity: []string{"web"}},
	}
	s := mustNew(t, c, Config{})
	res := s.PlaceBatch(s.VMsOn("h1"))
	want := []Placement{{"high", "h2"}, {"db1", "h3"}, {"db2", "h2"}, {"web1", "h3"}, {"web2", "h3"}}
	if !reflect.DeepEqual(res.Placed, want) {
		t.Errorf("placed %v, want %v", res.Placed, want)
	}
	if len(res.Failed) != 1 || res.Failed[0].VM != "low" || !errors.Is(res.Failed[0].Err, ErrNoHost) {
		t.Fatalf("failed %v", res.Failed)
	}
	if _, ok := s.VM("low"); ok {
		t.Error("a VM that fits nowhere stays placed")
	}
	if !strings.Contains(res.Failed[0].Err.Error(), "h2: 1536 MiB free of 8192 MiB, VM needs 7800 MiB") {
		t.Errorf("low: %v", res.Failed[0].Err)
	}
	dup := s.PlaceBatch([]VM{{Name: "x", CPUs: 1, MemoryMiB: 1}, {Name: "x", CPUs: 1, MemoryMiB: 1}})
	if len(dup.Placed) != 1 || len(dup.Failed) != 1 || !errors.Is(dup.Failed[0].Err, ErrInvalid) {
		t.Errorf("duplicate in a batch: %+v", dup)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	s := mustNew(t, equalHosts(2), Config{})
	s.Place(VM{Name: "a", CPUs: 1, MemoryMiB: 1024, AntiAffinity: []string{"g"}})
	c := s.Clone()
	c.Place(VM{Name: "b", CPUs: 1, MemoryMiB: 1024, AntiAffinity: []string{"g"}})
	c.Remove("a")
	c.SetHostState("h1", HostMaintenance)
	if _, ok := s.VM("b"); ok {
		t.Error("b shows in the original")
	}
	if vm, ok := s.VM("a"); !ok || vm.Host != "h1" {
		t.Errorf("a in the original: %+v", vm)
	}
	if h, _ := s.Host("h1"); h.State != HostReady {
		t.Error("host state leaked")
	}
	if rej, _ := s.Check(VM{Name: "z", CPUs: 1, MemoryMiB: 1, AntiAffinity: []string{"g"}}, "h1"); rej == nil {
		t.Error("anti-affinity index of the original lost a")
	}
}
