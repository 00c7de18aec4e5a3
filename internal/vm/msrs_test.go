package vm

import (
	"testing"

	"github.com/govisor/govisor/internal/kvm"
)

// TestSetMSRsSkipsRefused checks that setMSRs sets every MSR KVM accepts
// wherever in the list the ones it refuses are.
func TestSetMSRsSkipsRefused(t *testing.T) {
	m := newFlat(t, 1, countingGuest(), nil)
	c := m.runners[0].c
	const bad = 0x4B564DFF // not an MSR KVM knows
	good := []uint32{0x174, 0x175, 0x176, 0xC0000081, 0xC0000082}
	if err := c.SetMSRs([]kvm.MSR{{Index: bad, Data: 1}}); err == nil {
		t.Skipf("this KVM accepts MSR %#x: nothing to refuse", bad)
	}
	for k, tc := range []struct {
		name string
		at   []int // where the refused MSRs go
	}{
		{"none", nil},
		{"first", []int{0}},
		{"middle", []int{2}},
		{"last", []int{5}},
		{"several", []int{0, 3, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var list []kvm.MSR
			// A value per subtest and MSR. The SYSENTER MSRs get 32-bit
			// values: KVM keeps only the low 32 bits of SYSENTER_CS on
			// Intel (a 32-bit VMCS field) and of SYSENTER_ESP/EIP for an
			// AMD-vendor guest on kvm_amd; the others keep 64.
			val := func(i int) uint64 {
				v := uint64(k+1)<<16 | uint64(i+1)<<4
				if good[i] < 0x174 || good[i] > 0x176 {
					v |= uint64(k+1) << 32
				}
				return v
			}
			for i, idx := range good {
				list = append(list, kvm.MSR{Index: idx, Data: val(i)})
			}
			for _, at := range tc.at {
				list = append(list[:at], append([]kvm.MSR{{Index: bad, Data: 1}}, list[at:]...)...)
			}
			setMSRs(c, list)
			got, err := c.MSRs(good)
			if err != nil || len(got) != len(good) {
				t.Fatalf("read back %d MSRs: %v", len(got), err)
			}
			for i, g := range got {
				if g.Data != val(i) {
					t.Errorf("MSR %#x = %#x, want %#x", g.Index, g.Data, val(i))
				}
			}
		})
	}
}
