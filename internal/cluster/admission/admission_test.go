package admission

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/cluster/placement"
)

// hosts is n ready hosts of 4 CPUs and 8 GiB, lab1..labn, zone a but the
// third (zone b).
func hosts(n int) []placement.Host {
	var out []placement.Host
	for i := range n {
		zone := "a"
		if i == 2 {
			zone = "b"
		}
		out = append(out, placement.Host{Name: "lab" + string(rune('1'+i)), State: placement.HostReady, CPUs: 4, MemoryMiB: 8192,
			Labels: map[string]string{"zone": zone}})
	}
	return out
}

func state(t *testing.T, n int, vms ...placement.VM) *placement.State {
	t.Helper()
	s, err := placement.New(placement.Cluster{Hosts: hosts(n), VMs: vms}, placement.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const fix = "\nto fix: add a host or free capacity (stop or shrink a VM), relax the HA VMs' rules, or set the admission policy to warn"

func TestAdmit(t *testing.T) {
	db1 := placement.VM{Name: "db1", Host: "lab1", CPUs: 1, MemoryMiB: 6144, HA: true}
	app1 := placement.VM{Name: "app1", Host: "lab2", CPUs: 1, MemoryMiB: 2048, HA: true}
	web1 := placement.VM{Name: "web1", CPUs: 1, MemoryMiB: 4096}
	short := "admission: starting web1 on lab2 would leave too little capacity to restart the HA VMs of lab1 (the largest host: 1 HA VM, 1 vCPU, 6144 MiB) on the other hosts: 1 of them would fit nowhere (db1)\n" +
		"db1 (1 vCPU, 6144 MiB):\n  lab2: 2048 MiB free of 8192 MiB, VM needs 6144 MiB (memory overcommit 1.0)" + fix
	for _, tc := range []struct {
		name     string
		n        int
		vms      []placement.VM
		vm       placement.VM
		opts     Options
		host     string
		allowed  bool
		reason   string
		warning  string
		failover bool
	}{
		{name: "room enough", n: 3, vms: []placement.VM{db1, app1}, vm: web1, host: "lab3", allowed: true, failover: true},
		{name: "too little left", n: 2, vms: []placement.VM{db1, app1}, vm: web1, host: "lab2", reason: short, failover: true},
		{name: "warn", n: 2, vms: []placement.VM{db1, app1}, vm: web1, opts: Options{Policy: Warn}, host: "lab2", allowed: true, warning: short, failover: true},
		{name: "off", n: 2, vms: []placement.VM{db1, app1}, vm: web1, opts: Options{Policy: Off}, host: "lab2", allowed: true},
		{name: "short already", n: 2, vms: []placement.VM{db1, {Name: "app1", Host: "lab2", CPUs: 1, MemoryMiB: 4096, HA: true}},
			vm: placement.VM{Name: "tiny", CPUs: 1, MemoryMiB: 256}, host: "lab2", failover: true,
			reason: "admission: starting tiny on lab2 would leave too little capacity to restart the HA VMs of lab2 (the largest host: 1 HA VM, 1 vCPU, 4096 MiB) on the other hosts: 1 of them would fit nowhere (app1); the cluster was short already before tiny\n" +
				"app1 (1 vCPU, 4096 MiB):\n  lab1: 2048 MiB free of 8192 MiB, VM needs 4096 MiB (memory overcommit 1.0)" + fix},
		{name: "two failures", n: 3, vms: []placement.VM{db1, app1, {Name: "app3", Host: "lab3", CPUs: 1, MemoryMiB: 2048, HA: true}},
			vm: placement.VM{Name: "web1", CPUs: 1, MemoryMiB: 3072}, opts: Options{HostFailures: 2}, host: "lab2", failover: true,
			reason: "admission: starting web1 on lab2 would leave too little capacity to restart the HA VMs of lab1, lab3 (the 2 largest hosts: 2 HA VMs, 2 vCPUs, 8192 MiB) on the other hosts: 1 of them would fit nowhere (db1); the cluster was short already before web1\n" +
				"db1 (1 vCPU, 6144 MiB):\n  lab2: 3072 MiB free of 8192 MiB, VM needs 6144 MiB (memory overcommit 1.0)" + fix},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := state(t, tc.n, tc.vms...)
			before := s.VMs()
			d, err := Admit(s, tc.vm, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if d.Host != tc.host || d.Allowed != tc.allowed || d.Reason != tc.reason || d.Warning != tc.warning || (d.Failover != nil) != tc.failover {
				t.Errorf("got host %s allowed %v failover %v\nreason:\n%s\nwarning:\n%s\nwant host %s allowed %v\nreason:\n%s\nwarning:\n%s",
					d.Host, d.Allowed, d.Failover != nil, d.Reason, d.Warning, tc.host, tc.allowed, tc.reason, tc.warning)
			}
			if !reflect.DeepEqual(s.VMs(), before) {
				t.Error("Admit changed the state")
			}
		})
	}
}

// TestAllHosts: the largest host's HA VMs fit elsewhere, but a smaller
// host's HA VM is bound by a rule to a zone with no room: only the
// exhaustive check sees it.
func TestAllHosts(t *testing.T) {
	s := state(t, 3,
		placement.VM{Name: "big", Host: "lab3", CPUs: 1, MemoryMiB: 4096, HA: true},
		placement.VM{Name: "small", Host: "lab2", CPUs: 1, MemoryMiB: 1024, HA: true, HostRules: []placement.HostRule{{Kind: placement.Must, Selector: "zone=a"}}},
		placement.VM{Name: "filler", Host: "lab1", CPUs: 1, MemoryMiB: 7680})
	if got := Demands(s)[0].Host; got != "lab3" {
		t.Fatalf("largest host %s, want lab3", got)
	}
	if _, ok, err := Check(s, Options{}); !ok || err != nil {
		t.Fatalf("largest host only: ok %v %v", ok, err)
	}
	f, ok, err := Check(s, Options{AllHosts: true})
	if ok || err != nil || len(f.Failed) != 1 || f.Failed[0].Host != "lab2" || len(f.Refused) != 1 || f.Refused[0].VM != "small" {
		t.Fatalf("every host: ok %v %v %+v", ok, err, f)
	}
}

func TestDemands(t *testing.T) {
	s := state(t, 3,
		placement.VM{Name: "a", Host: "lab1", CPUs: 1, MemoryMiB: 2048, HA: true},
		placement.VM{Name: "b", Host: "lab2", CPUs: 4, MemoryMiB: 1024, HA: true}, // vCPUs bind: 4 of 16+16 free elsewhere... less than memory
		placement.VM{Name: "c", Host: "lab3", CPUs: 1, MemoryMiB: 4096},           // not HA
	)
	got := Demands(s)
	var order []string
	for _, d := range got {
		order = append(order, d.Host)
	}
	if !reflect.DeepEqual(order, []string{"lab1", "lab2", "lab3"}) || got[0].VMs != 1 || got[0].MemoryMiB != 2048 || got[2].Fraction != 0 {
		t.Errorf("demands %+v", got)
	}
	// lab1: 2048 MiB of 7168+4096 free elsewhere.
	if want := 2048.0 / (7168 + 4096); math.Abs(got[0].Fraction-want) > 1e-12 {
		t.Errorf("lab1 fraction %v, want %v", got[0].Fraction, want)
	}
	full := state(t, 2, placement.VM{Name: "a", Host: "lab1", CPUs: 1, MemoryMiB: 1024, HA: true},
		placement.VM{Name: "b", Host: "lab2", CPUs: 1, MemoryMiB: 8192})
	if d := Demands(full); !math.IsInf(d[0].Fraction, 1) || d[0].Host != "lab1" {
		t.Errorf("nothing free elsewhere: %+v", d)
	}
}

func TestAdmitErrors(t *testing.T) {
	s := state(t, 2, placement.VM{Name: "a", Host: "lab1", CPUs: 1, MemoryMiB: 8192})
	_, err := Admit(s, placement.VM{Name: "x", Host: "lab1", CPUs: 1, MemoryMiB: 1024}, Options{})
	want := "admission: vm x cannot run on lab1: 0 MiB free of 8192 MiB, VM needs 1024 MiB (memory overcommit 1.0): pick another host, or none to let placement choose"
	if !errors.Is(err, placement.ErrNoHost) || err.Error() != want {
		t.Errorf("host refuses: %v", err)
	}
	if _, err := Admit(s, placement.VM{Name: "x", CPUs: 1, MemoryMiB: 9000}, Options{}); !errors.Is(err, placement.ErrNoHost) {
		t.Errorf("fits nowhere: %v", err)
	}
	d, err := Admit(s, placement.VM{Name: "x", Host: "lab2", CPUs: 1, MemoryMiB: 1024}, Options{})
	if err != nil || !d.Allowed || d.Host != "lab2" {
		t.Errorf("explicit host: %+v %v", d, err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Policy: "maybe"}, `policy "maybe": use "refuse", "warn" or "off"`},
		{Options{HostFailures: -1}, "-1 host failures: give 1 or more"},
		{Options{HostFailures: 2, AllHosts: true}, "AllHosts simulates one failure at a time: set HostFailures to 1"},
	} {
		if _, err := Admit(s, placement.VM{Name: "x", CPUs: 1, MemoryMiB: 1}, tc.o); !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v", tc.o, err)
		}
	}
}
