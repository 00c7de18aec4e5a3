package cpuid

import (
	"slices"
	"testing"
)

// TestFeatureTableUnique: one name per bit, one bit per name.
func TestFeatureTableUnique(t *testing.T) {
	names := map[string]bool{}
	bits := map[Bits]string{}
	for _, f := range Features {
		if names[f.Name] {
			t.Errorf("feature %q listed twice", f.Name)
		}
		names[f.Name] = true
		if other, ok := bits[f.Bits]; ok {
			t.Errorf("features %q and %q name one bit %+v", f.Name, other, f.Bits)
		}
		if f.Bits.Mask == 0 || f.Bits.Mask&(f.Bits.Mask-1) != 0 {
			t.Errorf("feature %q: mask %#x is not one bit", f.Name, f.Bits.Mask)
		}
		bits[f.Bits] = f.Name
	}
}

// TestRestrict builds each fixture's CPUID restricted to a baseline that
// lacks AVX2 and AVX-512: the guest loses exactly those (and their XSAVE
// state), keeps the rest, and Present reads the same list back.
func TestRestrict(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx, func(t *testing.T) {
			in := load(t, fx)
			full, err := Build(in, Host, 2)
			if err != nil {
				t.Fatal(err)
			}
			all := Present(full)
			if !slices.Contains(all, "sse2") || !slices.Contains(all, "lm") {
				t.Fatalf("Present(host) = %v: no sse2 or lm", all)
			}
			var baseline []string
			for _, f := range all {
				if f != "avx2" && !(len(f) > 6 && f[:6] == "avx512") {
					baseline = append(baseline, f)
				}
			}
			got, err := Build(in, Restricted(Host, baseline), 2)
			if err != nil {
				t.Fatal(err)
			}
			if p := Present(got); !slices.Equal(p, baseline) {
				t.Errorf("Present(restricted) =\n%v\nwant\n%v", p, baseline)
			}
			if m := Missing(got, baseline); len(m) != 0 {
				t.Errorf("Missing(restricted, baseline) = %v", m)
			}
			if m := Missing(got, all); slices.Contains(all, "avx2") && !slices.Contains(m, "avx2") {
				t.Errorf("Missing(restricted, host) = %v, want avx2 among them", m)
			}
			if e := find(t, got, 1, 0); e.ECX&(1<<31) == 0 {
				t.Error("the hypervisor bit was cleared")
			}
			if slices.Contains(all, "avx512f") {
				if e := find(t, got, 0xD, 0); e.EAX&(1<<5|1<<6|1<<7) != 0 {
					t.Errorf("XCR0 still offers AVX-512 state: %#x", e.EAX)
				}
			}
			if slices.Contains(all, "avx") {
				if e := find(t, got, 0xD, 0); e.EAX&(1<<2) == 0 {
					t.Errorf("XCR0 lost AVX state: %#x", e.EAX)
				}
			}
		})
	}
}

// TestRestrictWithoutXSAVE: a baseline without xsave leaves only x87 and
// SSE state in CPUID.0DH.0:EAX.
func TestRestrictWithoutXSAVE(t *testing.T) {
	in := load(t, fixtures[1])
	got, err := Build(in, Restricted(Host, []string{"sse", "sse2", "lm"}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := find(t, got, 0xD, 0); e.EAX&^3 != 0 {
		t.Errorf("CPUID.0DH.0:EAX = %#x, want only bits 0-1", e.EAX)
	}
	if p := Present(got); !slices.Equal(p, []string{"lm", "sse", "sse2"}) {
		t.Errorf("Present = %v", p)
	}
}
