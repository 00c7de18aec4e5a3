package cpubaseline

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/cluster/placement"
)

func host(name, vendor, model string, features ...string) HostCPU {
	return HostCPU{Host: name, CPU: placement.CPU{Vendor: vendor, Model: model, Features: features}}
}

const intel, amd = "GenuineIntel", "AuthenticAMD"

func TestCompute(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hosts   []HostCPU
		want    Baseline
		wantErr string
	}{
		{name: "no hosts"},
		{name: "one host", hosts: []HostCPU{host("lab1", intel, "Skylake", "avx2", "sse4_2")}, want: Baseline{intel, "Skylake", []string{"avx2", "sse4_2"}}},
		{name: "intersection", hosts: []HostCPU{
			host("lab1", intel, "Skylake", "sse4_2", "avx2", "avx512f"),
			host("lab2", intel, "Skylake", "AVX2", " sse4_2", "sha_ni"),
		}, want: Baseline{intel, "Skylake", []string{"avx2", "sse4_2"}}},
		{name: "models differ", hosts: []HostCPU{host("lab1", intel, "Skylake", "avx2"), host("lab2", intel, "Icelake", "avx2")}, want: Baseline{intel, "", []string{"avx2"}}},
		{name: "vendors mix", hosts: []HostCPU{host("lab3", amd, "EPYC"), host("lab1", intel, "Skylake"), host("lab2", intel, "Skylake")},
			wantErr: "cpubaseline: hosts mix CPU vendors (AuthenticAMD: lab3; GenuineIntel: lab1, lab2), and a VM cannot move between vendors: move lab3 to a cluster of their own"},
		{name: "no vendor", hosts: []HostCPU{host("lab1", "", "x")},
			wantErr: "cpubaseline: no CPU vendor: host lab1 reports none: check that its agent reads /proc/cpuinfo (vendor_id)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Compute(tc.hosts)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCheckJoin(t *testing.T) {
	cluster := []HostCPU{host("lab1", intel, "Skylake", "sse4_2", "avx2", "avx512f", "sha_ni"), host("lab2", intel, "Skylake", "sse4_2", "avx2", "avx512f", "sha_ni", "amx")}
	vms := []VMCPU{
		{VM: "web2", Host: "lab1", Features: []string{"sse4_2", "avx2"}},
		{VM: "db1", Host: "lab2", Features: []string{"avx512f", "avx2"}},
		{VM: "web1", Host: "lab2", Features: []string{"avx2", "amx"}}, // amx: not in the baseline already
	}
	for _, tc := range []struct {
		name    string
		joining HostCPU
		want    []string
		wantErr string
	}{
		{name: "richer host", joining: host("lab3", intel, "Sapphire", "sse4_2", "avx2", "avx512f", "sha_ni", "amx"), want: []string{"avx2", "avx512f", "sha_ni", "sse4_2"}},
		{name: "lowers what no VM uses", joining: host("lab3", intel, "Skylake", "sse4_2", "avx2", "avx512f"), want: []string{"avx2", "avx512f", "sse4_2"}},
		{name: "lowers what VMs use", joining: host("lab3", intel, "Haswell", "sse4_2"),
			wantErr: "cpubaseline: host lab3 cannot join: its CPU lacks avx2, avx512f, which running VMs use (avx2: db1, web1, web2; avx512f: db1), so it would lower the cluster's CPU baseline below them: restart those VMs with a CPU model without them, or give lab3 a CPU that has them"},
		{name: "other vendor", joining: host("lab3", amd, "EPYC", "sse4_2", "avx2", "avx512f", "sha_ni"),
			wantErr: "cpubaseline: host lab3 cannot join: hosts would mix CPU vendors (AuthenticAMD: lab3; GenuineIntel: lab1, lab2), and a VM cannot move between vendors: join lab3 to a cluster of its vendor"},
		{name: "rejoin with a new CPU", joining: host("lab1", intel, "Skylake", "sse4_2", "avx2", "avx512f", "sha_ni", "amx"), want: []string{"amx", "avx2", "avx512f", "sha_ni", "sse4_2"}},
		{name: "no vendor", joining: host("lab3", "", ""), wantErr: "cpubaseline: no CPU vendor: host lab3 reports none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := CheckJoin(cluster, tc.joining, vms)
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(b.Features, tc.want) {
				t.Errorf("got %v %v, want %v", b.Features, err, tc.want)
			}
		})
	}
	var le *LowersError
	if _, err := CheckJoin(cluster, host("lab3", intel, "", "sse4_2", "avx2"), vms); !errors.As(err, &le) || !reflect.DeepEqual(le.Features(), []string{"avx512f"}) {
		t.Errorf("LowersError: %v", err)
	}
	if b, err := CheckJoin(nil, host("lab1", intel, "Skylake", "avx2"), vms); err != nil || b.Vendor != intel {
		t.Errorf("first host: %+v %v", b, err)
	}
}

func TestParseFeatures(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "fpu vme  de\tsse4_2 AVX2 avx2", want: []string{"avx2", "de", "fpu", "sse4_2", "vme"}},
		{in: "avx2,sse4_2, avx512f", want: []string{"avx2", "avx512f", "sse4_2"}},
		{in: "", want: []string{}},
		{in: "avx2;sse", wantErr: `cpubaseline: feature "avx2;sse" has ';': write names as /proc/cpuinfo flags`},
		{in: strings.Repeat("a", 65), wantErr: "has 65 characters (at most 64)"},
	} {
		got, err := ParseFeatures(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFeatures(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFeatures(%q) = %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseFeatures: no input panics; what parses is sorted, unique, and
// parses again to itself.
func FuzzParseFeatures(f *testing.F) {
	for _, s := range []string{"fpu vme de", "avx2,sse4_2", " , ", "AVX2 avx2", "a;b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFeatures(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("%q -> %q: not sorted and unique", s, got)
		}
		again, err := ParseFeatures(strings.Join(got, " "))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("%q -> %q -> %q %v", s, got, again, err)
		}
	})
}

// TestBaselineProperties checks Compute and CheckJoin on many random
// clusters against brute force.
func TestBaselineProperties(t *testing.T) {
	all := []string{"sse2", "sse4_2", "aes", "avx", "avx2", "avx512f", "sha_ni", "vaes", "amx"}
	for seed := range 500 {
		rng := rand.New(rand.NewPCG(uint64(seed), 5))
		pick := func() []string {
			var out []string
			for _, f := range all {
				if rng.IntN(4) > 0 {
					out = append(out, f)
				}
			}
			return out
		}
		vendor := func() string {
			if rng.IntN(10) == 0 {
				return amd
			}
			return intel
		}
		var hosts []HostCPU
		for i := range 1 + rng.IntN(6) {
			hosts = append(hosts, host(fmt.Sprintf("h%d", i), vendor(), "m", pick()...))
		}
		b, err := Compute(hosts)
		mixed := slices.ContainsFunc(hosts, func(h HostCPU) bool { return h.CPU.Vendor != hosts[0].CPU.Vendor })
		var ve *VendorError
		if mixed != errors.As(err, &ve) || !mixed && err != nil {
			t.Fatalf("seed %d: mixed %v, err %v", seed, mixed, err)
		}
		if mixed {
			continue
		}
		for _, f := range all {
			inAll := !slices.ContainsFunc(hosts, func(h HostCPU) bool { return !slices.Contains(h.CPU.Features, f) })
			if inAll != slices.Contains(b.Features, f) {
				t.Fatalf("seed %d: %s in every host %v, in baseline %v", seed, f, inAll, b.Features)
			}
		}
		shuffled := slices.Clone(hosts)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if b2, _ := Compute(shuffled); !reflect.DeepEqual(b, b2) {
			t.Fatalf("seed %d: host order changes the baseline", seed)
		}
		var vms []VMCPU
		for i := range rng.IntN(5) {
			vms = append(vms, VMCPU{VM: fmt.Sprintf("vm%d", i), Features: pick()})
		}
		joining := host("new", vendor(), "m", pick()...)
		nb, err := CheckJoin(hosts, joining, vms)
		want := map[string][]string{}
		for _, vm := range vms {
			for _, f := range vm.Features {
				if slices.Contains(b.Features, f) && !slices.Contains(joining.CPU.Features, f) {
					want[f] = append(want[f], vm.VM)
				}
			}
		}
		var le *LowersError
		switch {
		case joining.CPU.Vendor != b.Vendor:
			if !errors.As(err, &ve) {
				t.Fatalf("seed %d: other vendor joins: %v", seed, err)
			}
		case len(want) > 0:
			if !errors.As(err, &le) || !reflect.DeepEqual(le.VMs, want) {
				t.Fatalf("seed %d: %v, want lowered %v", seed, err, want)
			}
		default:
			cb, _ := Compute(append(slices.Clone(hosts), joining))
			if err != nil || !reflect.DeepEqual(nb, cb) {
				t.Fatalf("seed %d: %+v %v, want %+v", seed, nb, err, cb)
			}
			for _, vm := range vms {
				var lacks []string
				for _, f := range vm.Features {
					if !slices.Contains(b.Features, f) {
						lacks = append(lacks, f)
					}
				}
				slices.Sort(lacks)
				if got := b.Missing(vm.Features); !slices.Equal(got, lacks) {
					t.Fatalf("seed %d: Missing(%v) = %v, want %v", seed, vm.Features, got, lacks)
				}
				for _, f := range vm.Features {
					if slices.Contains(b.Features, f) && !slices.Contains(nb.Features, f) {
						t.Fatalf("seed %d: %s lost %s", seed, vm.VM, f)
					}
				}
			}
		}
	}
}
