package balance

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// three is h1..h3: 8 CPUs, 32 GiB, ready.
func three() []placement.Host {
	var hs []placement.Host
	for i := 1; i <= 3; i++ {
		hs = append(hs, placement.Host{Name: fmt.Sprintf("h%d", i), State: placement.HostReady, CPUs: 8, MemoryMiB: 32768})
	}
	return hs
}

// busy is n VMs named prefix1..n on host, each 1.2 CPUs busy, 1 GiB.
func busy(prefix, host string, n int) []VM {
	var out []VM
	for i := 1; i <= n; i++ {
		out = append(out, VM{VM: placement.VM{Name: fmt.Sprintf("%s%d", prefix, i), Host: host, CPUs: 2, MemoryMiB: 1024}, CPULoad: 1.2})
	}
	return out
}

// moves shows a plan's moves as "vm:from->to".
func moves(ms []Move) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.VM+":"+m.From+"->"+m.To)
	}
	return out
}

func TestRebalance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c        Cluster
		o        Options
		moves    []string
		balanced bool
		why      string
	}{
		{name: "skewed", c: Cluster{Hosts: three(), VMs: busy("vm", "h1", 6)}, balanced: true,
			moves: []string{"vm1:h1->h2", "vm2:h1->h3", "vm3:h1->h2", "vm4:h1->h3"}},
		{name: "within the band", c: Cluster{Hosts: three(), VMs: append(busy("a", "h1", 1), busy("b", "h2", 1)...)}, balanced: true},
		{name: "pinned", c: Cluster{Hosts: three(), VMs: func() []VM {
			v := busy("vm", "h1", 2)
			v[0].Pinned, v[1].Pinned = "GPU passthrough", "user pin"
			return v
		}()}, why: "imbalance 0.30 is above the band 0.15 after 0 migrations: no single migration narrows it: h1, the most loaded, has 0 VMs that may move; pinned: vm1 (GPU passthrough), vm2 (user pin)"},
		{name: "anti-affinity", c: Cluster{Hosts: three()[:2], VMs: func() []VM {
			v := append(busy("vm", "h1", 3), busy("x", "h2", 1)...)
			for i := range v {
				v[i].AntiAffinity = []string{"db"}
			}
			return v
		}()}, why: "imbalance 0.30 is above the band 0.15 after 0 migrations: each of the 3 migrations that would narrow it breaks a rule or a limit (anti-affinity 3)"},
		{name: "per-host limit", c: Cluster{Hosts: three(), VMs: busy("vm", "h1", 6)}, o: Options{MaxPerHost: 1},
			moves: []string{"vm1:h1->h2"}, why: "imbalance 0.75 is above the band 0.15 after 1 migration: no single migration narrows it: h1, the most loaded, has reached its limit of 1 migration"},
		{name: "max moves", c: Cluster{Hosts: three(), VMs: busy("vm", "h1", 6)}, o: Options{MaxMoves: 2},
			moves: []string{"vm1:h1->h2", "vm2:h1->h3"}, why: "imbalance 0.45 is above the band 0.15: the plan stops at its limit of 2 migrations; the next plan carries on"},
		{name: "not-ready hosts take nothing", c: Cluster{Hosts: func() []placement.Host {
			h := three()
			h[2].State = placement.HostMaintenance
			return h
		}(), VMs: busy("vm", "h1", 4)}, balanced: true, moves: []string{"vm1:h1->h2", "vm2:h1->h2"}},
		{name: "memory full", c: Cluster{Hosts: three()[:2], VMs: append(busy("vm", "h1", 2),
			// Allocated, the hog fills h2; measured, it barely loads it.
			VM{VM: placement.VM{Name: "hog", Host: "h2", CPUs: 1, MemoryMiB: 32000}, MemoryUsedMiB: 1024})},
			why: "imbalance 0.27 is above the band 0.15 after 0 migrations: each of the 2 migrations that would narrow it breaks a rule or a limit (memory 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Rebalance(tc.c, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(moves(p.Moves), tc.moves) || p.Balanced != tc.balanced || p.Why != tc.why {
				t.Errorf("got %v balanced %v\nwhy %q\nwant %v balanced %v\nwhy %q\n%s", moves(p.Moves), p.Balanced, p.Why, tc.moves, tc.balanced, tc.why, p)
			}
		})
	}
}

func TestRebalanceReport(t *testing.T) {
	c := Cluster{Hosts: three(), Pools: []placement.Pool{{Name: "local", Host: "h1"}}, VMs: busy("vm", "h1", 2)}
	c.VMs[0].Pools, c.VMs[0].Mirror = []string{"local"}, true
	c.VMs[1].Pools = []string{"local"} // cannot move: its disks stay on h1
	p, err := Rebalance(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `imbalance 0.30 -> 0.15 (band 0.15) with 1 migration
  vm1: h1 -> h2 (gain 0.071, disks mirrored): h1 30% -> 15%, h2 0% -> 15%: imbalance 0.30 -> 0.15`
	if p.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", p, want)
	}
	wantLoads := []HostLoad{{"h1", 0.3, 0.15}, {"h2", 0, 0.15}, {"h3", 0, 0}}
	for i, l := range p.Loads {
		if l.Host != wantLoads[i].Host || abs(l.Before-wantLoads[i].Before) > 1e-9 || abs(l.After-wantLoads[i].After) > 1e-9 {
			t.Errorf("loads %+v, want %+v", p.Loads, wantLoads)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestEvacuate(t *testing.T) {
	hosts := three()
	hosts[1].MemoryMiB = 8192
	hosts[2].MemoryMiB = 8192
	c := Cluster{Hosts: hosts, Pools: []placement.Pool{{Name: "local", Host: "h1"}}, VMs: []VM{
		{VM: placement.VM{Name: "db", Host: "h1", CPUs: 1, MemoryMiB: 4096, Priority: 9}},
		{VM: placement.VM{Name: "web", Host: "h1", CPUs: 1, MemoryMiB: 2048}},
		{VM: placement.VM{Name: "gpu", Host: "h1", CPUs: 1, MemoryMiB: 512}, Pinned: "GPU passthrough"},
		{VM: placement.VM{Name: "huge", Host: "h1", CPUs: 1, MemoryMiB: 16384}},
		{VM: placement.VM{Name: "app1", Host: "h1", CPUs: 1, MemoryMiB: 256, Affinity: []string{"app"}}},
		{VM: placement.VM{Name: "app2", Host: "h1", CPUs: 1, MemoryMiB: 256, Affinity: []string{"app"}}, Pinned: "user pin"},
		{VM: placement.VM{Name: "local1", Host: "h1", CPUs: 1, MemoryMiB: 256, Pools: []string{"local"}}, Mirror: true},
		{VM: placement.VM{Name: "local2", Host: "h1", CPUs: 1, MemoryMiB: 256, Pools: []string{"local"}}},
		{VM: placement.VM{Name: "other", Host: "h2", CPUs: 1, MemoryMiB: 1024}},
		{VM: placement.VM{Name: "pair1", Host: "h1", CPUs: 1, MemoryMiB: 128, Affinity: []string{"pair"}}},
		{VM: placement.VM{Name: "pair2", Host: "h1", CPUs: 1, MemoryMiB: 9000, Affinity: []string{"pair"}}},
	}}
	e, err := Evacuate(c, "h1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `evacuate h1: 3 migrations, 7 VMs stuck
  db -> h3
  web -> h2
  local1 -> h2 (disks mirrored)
  app1 stays: placement: vm app1 (1 vCPU, 256 MiB) fits none of the 2 hosts:
      h2: affinity group app runs on h1 (app2)
      h3: affinity group app runs on h1 (app2)
    to fix: free room on the host its affinity group runs on, or leave the group
  app2 stays: pinned: user pin
  gpu stays: pinned: GPU passthrough
  huge stays: placement: vm huge (1 vCPU, 16384 MiB) fits none of the 2 hosts:
      h2: 7168 MiB free of 8192 MiB, VM needs 16384 MiB (memory overcommit 1.0)
      h3: 4096 MiB free of 8192 MiB, VM needs 16384 MiB (memory overcommit 1.0)
    to fix: free or add memory (stop a VM, add a host) or raise the memory overcommit
  local2 stays: placement: vm local2 (1 vCPU, 256 MiB) fits none of the 2 hosts:
      h2: pool local is a dir pool on h1
      h3: pool local is a dir pool on h1
    to fix: put the VM's disks on a shared pool (or define the missing pool)
  pair1 stays: affinity group pair: pair2 cannot move, and the group stays together
  pair2 stays: placement: vm pair2 (1 vCPU, 9000 MiB) fits none of the 2 hosts:
      h2: 7168 MiB free of 8192 MiB, VM needs 9000 MiB (memory overcommit 1.0)
      h3: 4096 MiB free of 8192 MiB, VM needs 9000 MiB (memory overcommit 1.0)
    to fix: free or add memory (stop a VM, add a host) or raise the memory overcommit`
	if e.String() != want {
		t.Errorf("evacuation:\n%s\nwant:\n%s", e, want)
	}
	for _, tc := range []struct {
		host, state, want string
	}{
		{"h9", "", "balance: invalid input: host h9 is not in the cluster: check the name with govisor host list"},
		{"h2", string(placement.HostFenced), "balance: invalid input: host h2 is fenced: its VMs cannot be live-migrated; HA restarts its HA VMs elsewhere"},
	} {
		cc := c
		cc.Hosts = three()
		if tc.state != "" {
			cc.Hosts[1].State = placement.HostState(tc.state)
		}
		if _, err := Evacuate(cc, tc.host, Options{}); err == nil || err.Error() != tc.want {
			t.Errorf("Evacuate(%s): %v, want %s", tc.host, err, tc.want)
		}
	}
}

func TestOptionsAndInput(t *testing.T) {
	for _, tc := range []struct {
		c    Cluster
		o    Options
		want string
	}{
		{Cluster{}, Options{Threshold: 2}, "threshold 2: give a band above 0 and at most 1"},
		{Cluster{}, Options{MaxPerHost: -1}, "migration limits -1 per host, 0 in all: give 0 (the default) or more"},
		{Cluster{Hosts: three(), VMs: []VM{{VM: placement.VM{Name: "v", Host: "h1", CPUs: 1, MemoryMiB: 1}, CPULoad: -1}}}, Options{}, "vm v has a CPU load of -1"},
		{Cluster{Hosts: three(), VMs: []VM{{VM: placement.VM{Name: "v", CPUs: 1, MemoryMiB: 1}}}}, Options{}, "vm v has no host: list running VMs only"},
		{Cluster{Hosts: three(), VMs: []VM{{VM: placement.VM{Name: "v", Host: "zz", CPUs: 1, MemoryMiB: 1}}}}, Options{}, `vm v is on host "zz", which is not in the cluster`},
	} {
		_, err := Rebalance(tc.c, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v, want %q", err, tc.want)
		}
		if tc.o == (Options{}) && !errors.Is(err, ErrInvalid) && !errors.Is(err, placement.ErrInvalid) {
			t.Errorf("%v: not ErrInvalid", err)
		}
	}
}
