package vm

import (
	"encoding/binary"
	"math/bits"

	"github.com/govisor/govisor/internal/kvm"
)

// kvmClockTSCStable is KVM_CLOCK_TSC_STABLE in KVM_GET_CLOCK's flags: the
// host keeps one master clock for the VM, and the value KVM_GET_CLOCK
// returns is never behind what a vCPU's kvmclock has shown its guest.
const kvmClockTSCStable = 2

// msrKVMSystemTime is MSR_KVM_SYSTEM_TIME_NEW: where the guest asked KVM to
// keep a vCPU's pvclock structure (bit 0: enabled).
const msrKVMSystemTime = 0x4b564d01

// guestClockNS is the newest time any vCPU's kvmclock can have shown its
// guest, computed as the guest does (the pvclock structure in guest RAM
// and the vCPU's TSC, both as saved); 0 when no vCPU uses kvmclock. Without
// a stable master clock (nested KVM on an unstable TSC, as in the lab),
// KVM_GET_CLOCK can be behind that, and restoring it would send the
// guest's clock backwards (QEMU's kvmclock reads the guest's view too).
func (m *Machine) guestClockNS(vcpus []VCPUState) uint64 {
	var newest uint64
	for _, v := range vcpus {
		var tsc, sysTime uint64
		for _, msr := range v.MSRs {
			switch msr.Index {
			case 0x10:
				tsc = msr.Data
			case msrKVMSystemTime:
				sysTime = msr.Data
			}
		}
		if sysTime&1 == 0 || tsc == 0 {
			continue
		}
		// struct pvclock_vcpu_time_info (Documentation/virt/kvm/x86/msr.rst).
		var p [32]byte
		if _, err := m.mem.ReadAt(p[:], int64(sysTime&^1)); err != nil {
			continue
		}
		tscStamp := binary.LittleEndian.Uint64(p[8:])
		system := binary.LittleEndian.Uint64(p[16:])
		mul := binary.LittleEndian.Uint32(p[24:])
		shift := int8(p[28])
		if tsc < tscStamp {
			continue
		}
		delta := tsc - tscStamp
		if shift < 0 {
			delta >>= uint(-shift)
		} else {
			delta <<= uint(shift)
		}
		hi, lo := bits.Mul64(delta, uint64(mul))
		if ns := system + (hi<<32 | lo>>32); ns > newest {
			newest = ns
		}
	}
	return newest
}

// saveClock is the kvmclock value a restore must start from: KVM's, or the
// guest's own view when that is newer and the host clock is not stable.
func (m *Machine) saveClock(vcpus []VCPUState) (kvm.ClockData, error) {
	clk, err := m.kvm.Clock()
	if err != nil {
		return clk, err
	}
	if clk.Flags&kvmClockTSCStable == 0 {
		if ns := m.guestClockNS(vcpus); ns > clk.Clock {
			clk.Clock = ns
		}
	}
	return clk, nil
}
