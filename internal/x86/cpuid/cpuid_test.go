package cpuid

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// fixtures are KVM_GET_SUPPORTED_CPUID lists: one dumped from kvm_pvm on
// the development machine (AMD EPYC), one modelled on hardware KVM on an
// Intel Sapphire Rapids host.
var fixtures = []string{"testdata/amd_epyc_kvm_pvm.txt", "testdata/intel_spr_kvm.txt"}

// load reads a fixture: "function index flags eax ebx ecx edx" per line.
func load(t testing.TB, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 7 {
			t.Fatalf("%s:%d: %d fields", path, line, len(fields))
		}
		var v [7]uint32
		for i, s := range fields {
			n, err := strconv.ParseUint(s, 0, 32)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, line, err)
			}
			v[i] = uint32(n)
		}
		out = append(out, Entry{v[0], v[1], v[2], v[3], v[4], v[5], v[6]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func find(t *testing.T, es []Entry, fn, idx uint32) Entry {
	t.Helper()
	e, ok := Find(es, fn, idx)
	if !ok {
		t.Fatalf("no leaf %#x.%d", fn, idx)
	}
	return e
}

func TestTemplateBits(t *testing.T) {
	type want int
	const (
		cleared want = iota // bit is 0 in the result
		set                 // bit is 1 in the result
		kept                // bit is as KVM reported it
	)
	for _, tc := range []struct {
		name     string
		b        Bits
		host, pv want
	}{
		{"hypervisor", bit(1, 0, ECX, 31), set, set},
		{"VMX", bit(1, 0, ECX, 5), cleared, cleared},
		{"SVM", bit(0x80000001, 0, ECX, 2), cleared, cleared},
		{"CX16", bit(1, 0, ECX, 13), kept, cleared},
		{"PCID", bit(1, 0, ECX, 17), kept, cleared},
		{"POPCNT", bit(1, 0, ECX, 23), kept, cleared},
		{"XSAVE", bit(1, 0, ECX, 26), kept, cleared},
		{"OSXSAVE", bit(1, 0, ECX, 27), kept, cleared},
		{"AVX", bit(1, 0, ECX, 28), kept, cleared},
		{"RDRAND", bit(1, 0, ECX, 30), kept, cleared},
		{"x2APIC", bit(1, 0, ECX, 21), kept, kept},
		{"SSE4.2", bit(1, 0, ECX, 20), kept, kept},
		{"MOVBE", bit(1, 0, ECX, 22), kept, kept},
		{"TSC deadline", bit(1, 0, ECX, 24), kept, kept},
		{"SSE2", bit(1, 0, EDX, 26), kept, kept},
		{"FSGSBASE", bit(7, 0, EBX, 0), kept, cleared},
		{"AVX2", bit(7, 0, EBX, 5), kept, cleared},
		{"SMEP", bit(7, 0, EBX, 7), kept, kept},
		{"ERMS", bit(7, 0, EBX, 9), kept, cleared},
		{"INVPCID", bit(7, 0, EBX, 10), kept, cleared},
		{"AVX512F", bit(7, 0, EBX, 16), kept, cleared},
		{"RDSEED", bit(7, 0, EBX, 18), kept, cleared},
		{"SMAP", bit(7, 0, EBX, 20), kept, cleared},
		{"CLFLUSHOPT", bit(7, 0, EBX, 23), kept, kept},
		{"GFNI", bit(7, 0, ECX, 8), kept, kept},
		{"AVX512VNNI", bit(7, 0, ECX, 11), kept, cleared},
		{"RDPID", bit(7, 0, ECX, 22), kept, cleared},
		{"FSRM", bit(7, 0, EDX, 4), kept, cleared},
		{"AMX_TILE", bit(7, 0, EDX, 24), kept, cleared},
		{"ARCH_CAPABILITIES", bit(7, 0, EDX, 29), kept, kept},
		{"AVX_VNNI", bit(7, 1, EAX, 4), kept, cleared},
		{"XSAVES", bit(0xD, 1, EAX, 3), kept, cleared},
		{"XCR0 mask", Bits{0xD, 0, EAX, ^uint32(0)}, kept, cleared},
		{"AVX state size", Bits{0xD, 2, EAX, ^uint32(0)}, kept, cleared},
		{"LZCNT", bit(0x80000001, 0, ECX, 5), kept, cleared},
		{"LM", bit(0x80000001, 0, EDX, 29), kept, kept},
		{"NX", bit(0x80000001, 0, EDX, 20), kept, kept},
		{"KVM signature EBX", Bits{0x40000000, 0, EBX, ^uint32(0)}, kept, kept},
		{"KVM signature ECX", Bits{0x40000000, 0, ECX, ^uint32(0)}, kept, kept},
		{"KVM signature EDX", Bits{0x40000000, 0, EDX, ^uint32(0)}, kept, kept},
		{"kvmclock, kvmclock2, stable bit", bit(0x40000001, 0, EAX, 0, 3, 24), kept, kept},
		{"async PF, steal time, PV EOI, PV TLB flush", bit(0x40000001, 0, EAX, 4, 5, 6, 9), kept, kept},
		{"PV unhalt, send IPI, sched yield", bit(0x40000001, 0, EAX, 7, 11, 13), kept, cleared},
		{"invariant TSC", bit(0x80000007, 0, EDX, 8), kept, kept},
	} {
		for _, path := range fixtures {
			supported := load(t, path)
			in, ok := Find(supported, tc.b.Function, tc.b.Index)
			if !ok {
				continue // leaf not reported by this KVM
			}
			for _, tmpl := range []struct {
				t Template
				w want
			}{{Host, tc.host}, {PVM, tc.pv}} {
				got, err := Build(supported, tmpl.t, 2)
				if err != nil {
					t.Fatal(err)
				}
				out := find(t, got, tc.b.Function, tc.b.Index)
				g, w := *out.reg(tc.b.Reg)&tc.b.Mask, *in.reg(tc.b.Reg)&tc.b.Mask
				switch tmpl.w {
				case cleared:
					w = 0
				case set:
					w = tc.b.Mask
				}
				if g != w {
					t.Errorf("%s, template %s, %s: %#x, want %#x", path, tmpl.t.Name, tc.name, g, w)
				}
			}
		}
	}
}

func TestPVMZeroesXSAVELeaves(t *testing.T) {
	for _, path := range fixtures {
		supported := load(t, path)
		got, err := Build(supported, PVM, 4)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range got {
			if e.Function == 0xD || e.Function == 0x1D || e.Function == 0x1E {
				n++
				if e.EAX|e.EBX|e.ECX|e.EDX != 0 {
					t.Errorf("%s: leaf %#x.%d not zeroed: %+v", path, e.Function, e.Index, e)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no XSAVE leaves in the result", path)
		}
		// Only the topology leaves may change their number of sub-leaves.
		count := func(es []Entry) (n int) {
			for _, e := range es {
				if e.Function != 0xB && e.Function != 0x1F {
					n++
				}
			}
			return n
		}
		if count(got) != count(supported) {
			t.Errorf("%s: %d entries from %d", path, count(got), count(supported))
		}
	}
}

func TestTopology(t *testing.T) {
	for _, path := range fixtures {
		supported := load(t, path)
		for _, n := range []int{1, 2, 3, 4, 64, MaxCPUs} {
			t.Run(fmt.Sprintf("%s/%d", path, n), func(t *testing.T) {
				got, err := Build(supported, Host, n)
				if err != nil {
					t.Fatal(err)
				}
				l1, in1 := find(t, got, 1, 0), find(t, supported, 1, 0)
				if c := l1.EBX >> 16 & 0xFF; c != uint32(n) {
					t.Errorf("leaf 1 EBX[23:16] = %d", c)
				}
				if id := l1.EBX >> 24; id != 0 {
					t.Errorf("leaf 1 APIC ID %d before ForVCPU", id)
				}
				if l1.EBX&0xFFFF != in1.EBX&0xFFFF || l1.EBX>>8&0xFF != 8 {
					t.Errorf("leaf 1 EBX[15:0] = %#x, KVM said %#x", l1.EBX&0xFFFF, in1.EBX&0xFFFF)
				}
				if htt := l1.EDX>>28&1 == 1; htt != (n > 1) {
					t.Errorf("HTT = %v", htt)
				}
				shift := uint32(0)
				for 1<<shift < n {
					shift++
				}
				for _, fn := range []uint32{0xB, 0x1F} {
					if _, ok := Find(supported, fn, 0); !ok {
						if _, ok := Find(got, fn, 0); ok {
							t.Errorf("leaf %#x invented", fn)
						}
						continue
					}
					want := []Entry{
						{fn, 0, 1, 0, 1, 0x100, 0},
						{fn, 1, 1, shift, uint32(n), 0x201, 0},
						{fn, 2, 1, 0, 0, 2, 0},
					}
					var have []Entry
					for _, e := range got {
						if e.Function == fn {
							have = append(have, e)
						}
					}
					if !reflect.DeepEqual(have, want) {
						t.Errorf("leaf %#x = %+v, want %+v", fn, have, want)
					}
				}
				for _, fn := range []uint32{4, 0x8000001D} {
					for _, e := range got {
						if e.Function != fn || e.EAX&0x1F == 0 {
							continue
						}
						level, sharing := e.EAX>>5&7, e.EAX>>14&0xFFF
						wantSharing := uint32(0)
						if level == 3 {
							wantSharing = uint32(n - 1)
						}
						if sharing != wantSharing {
							t.Errorf("leaf %#x.%d (L%d): %d sharing, want %d", fn, e.Index, level, sharing+1, wantSharing+1)
						}
						if fn == 4 && e.EAX>>26 != uint32(min(n-1, 63)) {
							t.Errorf("leaf 4.%d EAX[31:26] = %d", e.Index, e.EAX>>26)
						}
						if in := find(t, supported, fn, e.Index); in.EAX&0x3FFF != e.EAX&0x3FFF {
							t.Errorf("leaf %#x.%d cache type/level changed", fn, e.Index)
						}
					}
				}
				if e, ok := Find(got, 0x80000008, 0); ok {
					if e.ECX&0xFF != uint32(n-1) || e.ECX>>12&0xF != shift {
						t.Errorf("leaf 0x80000008 ECX = %#x", e.ECX)
					}
				}
			})
		}
	}
}

func TestForVCPU(t *testing.T) {
	for _, path := range fixtures {
		vm, err := Build(load(t, path), Host, 64)
		if err != nil {
			t.Fatal(err)
		}
		before := append([]Entry(nil), vm...)
		for _, id := range []int{0, 1, 5, 63} {
			got := ForVCPU(vm, id)
			if len(got) != len(vm) {
				t.Fatalf("%d entries, want %d", len(got), len(vm))
			}
			if a := find(t, got, 1, 0).EBX >> 24; a != uint32(id) {
				t.Errorf("%s: vCPU %d: leaf 1 APIC ID %d", path, id, a)
			}
			for i, e := range got {
				switch e.Function {
				case 0xB, 0x1F:
					if e.EDX != uint32(id) {
						t.Errorf("%s: vCPU %d: leaf %#x.%d x2APIC ID %d", path, id, e.Function, e.Index, e.EDX)
					}
				case 0x8000001E:
					if e.EAX != uint32(id) || e.EBX&0xFF != uint32(id) {
						t.Errorf("%s: vCPU %d: leaf 0x8000001E %+v", path, id, e)
					}
				case 1:
				default:
					if e != vm[i] {
						t.Errorf("%s: vCPU %d: leaf %#x.%d changed", path, id, e.Function, e.Index)
					}
				}
			}
		}
		if !reflect.DeepEqual(before, vm) {
			t.Errorf("%s: ForVCPU changed its input", path)
		}
	}
}

func TestBuildKeepsInput(t *testing.T) {
	for _, path := range fixtures {
		supported := load(t, path)
		before := append([]Entry(nil), supported...)
		for _, tmpl := range Templates() {
			if _, err := Build(supported, tmpl, 8); err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(before, supported) {
			t.Errorf("%s: Build changed its input", path)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	supported := load(t, fixtures[0])
	var noLeaf1 []Entry
	for _, e := range supported {
		if e.Function != 1 {
			noLeaf1 = append(noLeaf1, e)
		}
	}
	tooMany := make([]Entry, MaxEntries+1)
	tooMany[0].Function = 1
	for _, tc := range []struct {
		name      string
		supported []Entry
		t         Template
		n         int
		want      error
	}{
		{"no CPUs", supported, Host, 0, ErrBadCPUCount},
		{"negative", supported, Host, -3, ErrBadCPUCount},
		{"too many CPUs", supported, Host, MaxCPUs + 1, ErrBadCPUCount},
		{"no leaf 1", noLeaf1, Host, 1, ErrNoLeaf},
		{"empty", nil, PVM, 1, ErrNoLeaf},
		{"too many entries", tooMany, Host, 1, ErrTooManyEntries},
	} {
		if _, err := Build(tc.supported, tc.t, tc.n); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	bad := Template{Name: "bad", Clear: []Bits{{Function: 1, Reg: 7, Mask: 1}}}
	if _, err := Build(supported, bad, 1); err == nil {
		t.Error("template with a bad register accepted")
	}
}

func TestKernelArgs(t *testing.T) {
	for _, tc := range []struct {
		t    Template
		want string
	}{
		{Host, ""},
		{PVM, "noxsave clearcpuid=cx16,xsave,popcnt,erms,fsrm,fsgsbase,rdpid,invpcid,pcid,smap,rdrand,rdseed " +
			"GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX512ER,-AVX512PF,-FMA,-F16C,-AVX_VNNI,-XSAVEC,-XSAVE,-OSXSAVE"},
		{Template{GlibcHide: []string{"AVX2"}}, "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2"},
		{Template{ClearCPUID: []string{"smap"}}, "clearcpuid=smap"},
		{Template{NoXSave: true}, "noxsave"},
	} {
		if got := KernelArgs(tc.t); got != tc.want {
			t.Errorf("KernelArgs(%q) = %q, want %q", tc.t.Name, got, tc.want)
		}
	}
}

// FuzzBuild feeds arbitrary entry lists through Build and ForVCPU: they
// must not panic, and a success must keep the entry count bounds.
func FuzzBuild(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 4)
	f.Add(make([]byte, 28*3), 1)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		var supported []Entry
		for len(data) >= 28 {
			var v [7]uint32
			for i := range v {
				v[i] = binary.LittleEndian.Uint32(data[4*i:])
			}
			// Fold functions onto the leaves Build cares about.
			v[0] = []uint32{1, 4, 0xB, 0x1F, 0xD, 0x80000008, 0x8000001D, 0x8000001E}[v[0]%8]
			supported = append(supported, Entry{v[0], v[1], v[2] & 1, v[3], v[4], v[5], v[6]})
			data = data[28:]
		}
		for _, tmpl := range Templates() {
			got, err := Build(supported, tmpl, n)
			if err != nil {
				continue
			}
			if len(got) > MaxEntries || len(got) > len(supported)+6 {
				t.Fatalf("%d entries from %d", len(got), len(supported))
			}
			if v := ForVCPU(got, n-1); len(v) != len(got) {
				t.Fatal("ForVCPU changed the entry count")
			}
		}
	})
}
