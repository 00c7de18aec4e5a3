package ha

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/placement"
)

func host(name string, cpus int, mib uint64) api.Host {
	return api.Host{Name: name, CPUs: cpus, MemoryMiB: mib}
}

func vm(name, host string, ha bool, prio, mem string, pools ...string) VM {
	s := api.VMSpec{Name: name, CPUs: 1, Memory: mem, HA: ha, RestartPriority: prio}
	for _, p := range pools {
		s.Disks = append(s.Disks, api.DiskSpec{Pool: p, Path: "/p/" + p + "/" + name})
	}
	return VM{Spec: s, Power: api.PowerRunning, Host: host}
}

func TestPlan(t *testing.T) {
	shared := api.Pool{Name: "shared", Kind: api.PoolShared, Shared: true, Path: "/srv/shared"}
	local1 := api.Pool{Name: "local1", Path: "/var/lib/p1", Host: "h1"}
	cases := []struct {
		name     string
		snap     Snapshot
		restarts []Restart
		waiting  []string // VM names
		reason   string   // in every waiting VM's reason
	}{
		{
			name: "live host: nothing to do",
			snap: Snapshot{Hosts: []api.Host{host("h1", 4, 4096), host("h2", 4, 4096)}, VMs: []VM{vm("a", "h1", true, "", "512M")}},
		},
		{
			name: "dead host: HA VM moves, non-HA and stopped VMs stay",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 4096)}, VMs: []VM{
				vm("a", "h1", true, "", "512M"), vm("b", "h1", false, "", "512M"),
				{Spec: api.VMSpec{Name: "c", HA: true}, Power: api.PowerStopped, Host: "h1"},
			}},
			restarts: []Restart{{VM: "a", From: "h1", To: "h2"}},
		},
		{
			name: "priority decides who gets the last room",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 1024)}, VMs: []VM{
				vm("low", "h1", true, "low", "768M"), vm("high", "h1", true, "high", "768M"),
			}},
			restarts: []Restart{{VM: "high", From: "h1", To: "h2"}},
			waiting:  []string{"low"},
			reason:   "memory",
		},
		{
			name: "capacity taken by a live host's VMs counts",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 1024), host("h3", 4, 1024)}, VMs: []VM{
				vm("a", "h1", true, "", "768M"), vm("big", "h2", false, "", "768M"),
			}},
			restarts: []Restart{{VM: "a", From: "h1", To: "h3"}},
		},
		{
			name: "a disk on the dead host's own pool keeps the VM waiting",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 4096)}, Pools: []api.Pool{local1, shared}, VMs: []VM{
				vm("a", "h1", true, "", "256M", "local1"), vm("b", "h1", true, "", "256M", "shared"),
			}},
			restarts: []Restart{{VM: "b", From: "h1", To: "h2"}},
			waiting:  []string{"a"},
			reason:   "local1",
		},
		{
			name: "a disk path under a shared pool's folder is on that pool",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 4096)}, Pools: []api.Pool{shared}, VMs: []VM{
				{Spec: api.VMSpec{Name: "a", HA: true, Disks: []api.DiskSpec{{Path: "/srv/shared/a.qcow2"}}}, Power: api.PowerRunning, Host: "h1"},
				{Spec: api.VMSpec{Name: "b", HA: true, Disks: []api.DiskSpec{{Path: "/var/lib/vm/b.raw"}}}, Power: api.PowerRunning, Host: "h1"},
			}},
			restarts: []Restart{{VM: "a", From: "h1", To: "h2"}},
			waiting:  []string{"b"},
			reason:   "local:h1:/var/lib/vm",
		},
		{
			name: "anti-affinity keeps two VMs apart across the restart",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 4096), host("h3", 4, 4096)}, VMs: []VM{
				withGroups(vm("a", "h1", true, "", "256M"), nil, []string{"pair"}),
				withGroups(vm("b", "h2", false, "", "256M"), nil, []string{"pair"}),
				vm("filler", "h3", false, "", "1G"),
			}},
			restarts: []Restart{{VM: "a", From: "h1", To: "h3"}},
		},
		{
			name: "affinity follows the group; host rules follow labels",
			snap: Snapshot{Hosts: []api.Host{host("h2", 4, 4096), labelled(host("h3", 4, 4096), "zone", "b")}, VMs: []VM{
				withGroups(vm("a", "h1", true, "", "256M"), []string{"web"}, nil),
				withGroups(vm("b", "h2", false, "", "256M"), []string{"web"}, nil),
				withRules(vm("c", "h1", true, "", "256M"), "must zone=b"),
			}},
			restarts: []Restart{{VM: "a", From: "h1", To: "h2"}, {VM: "c", From: "h1", To: "h3"}},
		},
		{
			name:    "no live host at all",
			snap:    Snapshot{VMs: []VM{vm("a", "h1", true, "", "256M")}},
			waiting: []string{"a"},
			reason:  "host",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Plan(c.snap, placement.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Restarts, c.restarts) {
				t.Errorf("restarts %+v, want %+v", d.Restarts, c.restarts)
			}
			var waiting []string
			for _, w := range d.Waiting {
				waiting = append(waiting, w.VM)
				if !strings.Contains(w.Reason, c.reason) || w.From == "" {
					t.Errorf("%s waits from %q because %q: want it to mention %q", w.VM, w.From, w.Reason, c.reason)
				}
			}
			if !slices.Equal(waiting, c.waiting) {
				t.Errorf("waiting %v, want %v", waiting, c.waiting)
			}
		})
	}
}

// TestPlanProperties: over generated clusters with dead hosts, a plan
// moves only HA VMs of dead hosts meant to run, each once, to live hosts,
// never past a host's memory, and leaves waiting only what does not fit.
func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		var s Snapshot
		nh := 1 + rng.IntN(6)
		alive := map[string]bool{}
		mem := map[string]uint64{}
		for i := range nh {
			name := fmt.Sprintf("h%d", i)
			if rng.IntN(3) > 0 {
				m := uint64(512 * (1 + rng.IntN(8)))
				s.Hosts = append(s.Hosts, host(name, 64, m))
				alive[name], mem[name] = true, m
			}
		}
		used := map[string]uint64{}
		for i := range rng.IntN(20) {
			h := fmt.Sprintf("h%d", rng.IntN(nh))
			v := vm(fmt.Sprintf("v%d", i), h, rng.IntN(2) == 0, []string{"", "low", "high"}[rng.IntN(3)], fmt.Sprintf("%dM", 128*(1+rng.IntN(4))))
			if rng.IntN(5) == 0 {
				v.Power = api.PowerStopped
			}
			mib, _ := api.ParseMemoryMiB(v.Spec.Memory)
			if alive[h] {
				if used[h]+mib > mem[h] {
					continue // the generator keeps live hosts within capacity
				}
				if v.Power == api.PowerRunning {
					used[h] += mib
				}
			}
			s.VMs = append(s.VMs, v)
		}
		d, err := Plan(s, placement.Config{})
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		byName := map[string]VM{}
		for _, v := range s.VMs {
			byName[v.Spec.Name] = v
		}
		seen := map[string]bool{}
		for _, r := range d.Restarts {
			v := byName[r.VM]
			mib, _ := api.ParseMemoryMiB(v.Spec.Memory)
			switch {
			case seen[r.VM]:
				t.Fatalf("iteration %d: %s moved twice", iter, r.VM)
			case !v.Spec.HA || v.Power != api.PowerRunning || alive[v.Host] || r.From != v.Host:
				t.Fatalf("iteration %d: moved %+v (from %s)", iter, v, r.From)
			case !alive[r.To]:
				t.Fatalf("iteration %d: %s moved to %s, not live", iter, r.VM, r.To)
			}
			seen[r.VM] = true
			used[r.To] += mib
			if used[r.To] > mem[r.To] {
				t.Fatalf("iteration %d: %s overcommits %s's memory", iter, r.VM, r.To)
			}
		}
		for _, w := range d.Waiting {
			if seen[w.VM] {
				t.Fatalf("iteration %d: %s both moved and waiting", iter, w.VM)
			}
			seen[w.VM] = true
		}
		for _, v := range s.VMs {
			if v.Spec.HA && v.Power == api.PowerRunning && !alive[v.Host] && !seen[v.Spec.Name] {
				t.Fatalf("iteration %d: %s of dead host %s neither moved nor waiting", iter, v.Spec.Name, v.Host)
			}
		}
	}
}

func withGroups(v VM, affinity, anti []string) VM {
	v.Spec.Affinity, v.Spec.AntiAffinity = affinity, anti
	return v
}

func withRules(v VM, rules ...string) VM {
	v.Spec.HostRules = rules
	return v
}

func labelled(h api.Host, k, v string) api.Host {
	h.Labels = map[string]string{k: v}
	return h
}
