package view

import (
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
)

// TestPlacementVM: a VM's size, priority, groups and rules carry over, and
// each disk maps to its pool: named, found by folder, or its host's own.
func TestPlacementVM(t *testing.T) {
	pools := []api.Pool{{Name: "shared", Shared: true, Path: "/srv/shared"}}
	v := VM{Host: "h1", Power: api.PowerRunning, Spec: api.VMSpec{
		Name: "a", CPUs: 2, Memory: "1G", HA: true, RestartPriority: "high",
		AntiAffinity: []string{"pair"}, HostRules: []string{"must zone=a"},
		Disks: []api.DiskSpec{{Pool: "p1", Path: "/p1/x"}, {Path: "/srv/shared/y.qcow2"}, {Path: "/var/lib/vm/z.raw"}, {Path: "/srv/shared/w"}},
	}}
	pv := PlacementVM(v, pools)
	if pv.CPUs != 2 || pv.MemoryMiB != 1024 || !pv.HA || pv.Priority != 3 || !slices.Equal(pv.AntiAffinity, []string{"pair"}) {
		t.Errorf("%+v", pv)
	}
	if want := []placement.HostRule{{Kind: placement.Must, Selector: "zone=a"}}; !slices.Equal(pv.HostRules, want) {
		t.Errorf("rules %+v, want %+v", pv.HostRules, want)
	}
	if want := []string{"p1", "shared", "local:h1:/var/lib/vm"}; !slices.Equal(pv.Pools, want) {
		t.Errorf("pools %v, want %v", pv.Pools, want)
	}
	if pv := PlacementVM(VM{Spec: api.VMSpec{Name: "b"}}, nil); pv.CPUs != 1 || pv.MemoryMiB != 256 || pv.Priority != 2 {
		t.Errorf("defaults: %+v", pv)
	}
}

// TestCluster: dead hosts named by VMs are unreachable, only running VMs
// of live hosts hold capacity, and hosts in maintenance are marked.
func TestCluster(t *testing.T) {
	hosts := InMaintenance([]api.Host{{Name: "h1", CPUs: 4}, {Name: "h2", CPUs: 4}}, func(h string) bool { return h == "h2" })
	vms := []VM{
		{Spec: api.VMSpec{Name: "a"}, Power: api.PowerRunning, Host: "h1"},
		{Spec: api.VMSpec{Name: "b"}, Power: api.PowerStopped, Host: "h1"},
		{Spec: api.VMSpec{Name: "c"}, Power: api.PowerRunning, Host: "gone"},
		{Spec: api.VMSpec{Name: "d"}, Power: api.PowerRunning, Host: "h2"},
	}
	c := Cluster(hosts, nil, vms, func(v VM) bool { return v.Spec.Name == "d" })
	states := map[string]placement.HostState{}
	for _, h := range c.Hosts {
		states[h.Name] = h.State
	}
	if states["h1"] != placement.HostReady || states["h2"] != placement.HostMaintenance || states["gone"] != placement.HostUnreachable {
		t.Errorf("host states %v", states)
	}
	var names []string
	for _, v := range c.VMs {
		names = append(names, v.Name)
	}
	if !slices.Equal(names, []string{"a"}) {
		t.Errorf("VMs holding capacity: %v, want [a]", names)
	}
}

// TestClusterCPUFeatures: a "host" CPU VM needs its host's features
// wherever it moves; a baseline VM (the default) needs nothing more.
func TestClusterCPUFeatures(t *testing.T) {
	hosts := []api.Host{{Name: "h1", CPUs: 4, CPUFeatures: []string{"avx2", "sse2"}}, {Name: "h2", CPUs: 4, CPUFeatures: []string{"sse2"}}}
	vms := []VM{
		{Spec: api.VMSpec{Name: "pinned", CPU: api.CPUHost}, Power: api.PowerRunning, Host: "h1"},
		{Spec: api.VMSpec{Name: "free"}, Power: api.PowerRunning, Host: "h1"},
	}
	c := Cluster(hosts, nil, vms, nil)
	got := map[string][]string{}
	for _, v := range c.VMs {
		got[v.Name] = v.CPUFeatures
	}
	if !slices.Equal(got["pinned"], []string{"avx2", "sse2"}) || got["free"] != nil {
		t.Errorf("VM CPU features %v", got)
	}
	// With h1 in maintenance only h2 is left, which lacks avx2.
	c = Cluster(InMaintenance(hosts, func(h string) bool { return h == "h1" }), nil, vms, nil)
	st, err := placement.New(c, placement.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range c.VMs {
		if v.Name != "pinned" {
			continue
		}
		if _, err := st.Place(v); err == nil || !strings.Contains(err.Error(), "avx2") {
			t.Errorf("placing the host-CPU VM elsewhere: %v, want h2 refused for lacking avx2", err)
		}
	}
}
