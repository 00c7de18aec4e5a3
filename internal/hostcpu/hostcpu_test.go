package hostcpu

import (
	"slices"
	"strings"
	"testing"
)

const epyc = `processor	: 0
vendor_id	: AuthenticAMD
cpu family	: 23
model name	: AMD EPYC Processor
flags		: fpu vme sse2 svm npt avx2 sse2

processor	: 1
vendor_id	: AuthenticAMD
model name	: AMD EPYC Processor
flags		: fpu vme
`

func TestParse(t *testing.T) {
	c, err := Parse(strings.NewReader(epyc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Vendor != "AuthenticAMD" || c.Model != "AMD EPYC Processor" {
		t.Errorf("vendor %q model %q", c.Vendor, c.Model)
	}
	if want := []string{"avx2", "fpu", "npt", "sse2", "svm", "vme"}; !slices.Equal(c.Features, want) {
		t.Errorf("features %v, want %v (first processor, sorted, no duplicates)", c.Features, want)
	}
	for _, bad := range []string{"", "processor : 0\nmodel name : x\n", "garbage without colons"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestRead(t *testing.T) {
	c, err := Read()
	if err != nil {
		t.Fatal(err) // every x86 Linux host has /proc/cpuinfo with flags
	}
	if !slices.Contains(c.Features, "fpu") {
		t.Errorf("this host's CPU has no fpu flag: %+v", c)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(epyc)
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		if c.Vendor == "" || len(c.Features) == 0 || !slices.IsSorted(c.Features) {
			t.Fatalf("accepted %+v", c)
		}
	})
}
