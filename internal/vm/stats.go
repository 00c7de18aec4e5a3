package vm

import (
	"fmt"
	"sync/atomic"

	"github.com/govisor/govisor/internal/kvm"
	"github.com/govisor/govisor/internal/virtio/blk"
	"github.com/govisor/govisor/internal/virtio/netdev"
)

// exitReasonSlots bounds the per-reason exit counters; KVM's reasons
// (kvm_run.exit_reason, include/uapi/linux/kvm.h) are small numbers, and
// any beyond the table are counted in its last slot.
const exitReasonSlots = 64

// exitCounts counts one vCPU's exits by reason. Each vCPU has its own, so
// the vCPU loop pays one uncontended atomic add per exit.
type exitCounts [exitReasonSlots]atomic.Uint64

// exitReasonNames names KVM's exit reasons as the kernel does (KVM_EXIT_*).
var exitReasonNames = map[uint32]string{
	kvm.ExitUnknown: "UNKNOWN", kvm.ExitException: "EXCEPTION", kvm.ExitIO: "IO", kvm.ExitHypercall: "HYPERCALL",
	kvm.ExitDebug: "DEBUG", kvm.ExitHLT: "HLT", kvm.ExitMMIO: "MMIO", kvm.ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	kvm.ExitShutdown: "SHUTDOWN", kvm.ExitFailEntry: "FAIL_ENTRY", kvm.ExitIntr: "INTR", kvm.ExitNMI: "NMI",
	kvm.ExitInternalError: "INTERNAL_ERROR", kvm.ExitSystemEvent: "SYSTEM_EVENT", kvm.ExitIOAPICEOI: "IOAPIC_EOI",
}

// ExitReasonName returns the KVM_EXIT_* name of an exit reason, without
// the prefix ("IO", "MMIO", "HLT"), or "REASON_<n>" for one without a name.
func ExitReasonName(reason uint32) string {
	if n, ok := exitReasonNames[reason]; ok {
		return n
	}
	if reason >= exitReasonSlots-1 {
		return "OTHER"
	}
	return fmt.Sprintf("REASON_%d", reason)
}

// countExit records one exit of vCPU id.
func (m *Machine) countExit(id int, reason uint32) {
	m.exitReasons[id][min(reason, exitReasonSlots-1)].Add(1)
}

// ExitsByReason returns the KVM exits to user space since the machine was
// built, by reason name (see ExitReasonName), summed over its vCPUs;
// reasons never seen are left out.
func (m *Machine) ExitsByReason() map[string]uint64 {
	out := map[string]uint64{}
	for id := range m.exitReasons {
		for r := range m.exitReasons[id] {
			if n := m.exitReasons[id][r].Load(); n > 0 {
				out[ExitReasonName(uint32(r))] += n
			}
		}
	}
	return out
}

// DiskStats are one virtio-blk disk's request counts.
type DiskStats struct {
	Name string // vda, vdb, ... in --disk order
	Path string
	blk.Stats
}

// NetStats are one virtio-net interface's traffic counts.
type NetStats struct {
	Name string // the host TAP device
	MAC  string
	netdev.Counters
}

// DiskStats returns the request counts of each disk, in --disk order, then
// the hot-plugged ones.
func (m *Machine) DiskStats() []DiskStats {
	var out []DiskStats
	for _, d := range m.devs.Devices() {
		if b, ok := d.Dev.(*blk.Device); ok {
			i := len(out)
			st := DiskStats{Name: fmt.Sprintf("vd%c", 'a'+i%26), Stats: b.Stats()}
			if i < len(m.cfg.Disks) {
				st.Path = m.cfg.Disks[i].Path
			}
			out = append(out, st)
		}
	}
	return append(out, m.hotplugDiskStats()...)
}

// NetStats returns the traffic counts of each network interface, in --net
// order.
func (m *Machine) NetStats() []NetStats {
	var out []NetStats
	for _, d := range m.devs.Devices() {
		if n, ok := d.Dev.(*netdev.Device); ok {
			i := len(out)
			st := NetStats{MAC: n.MAC().String(), Counters: n.Counters()}
			if i < len(m.cfg.Nets) {
				st.Name = m.cfg.Nets[i].TAP
			}
			out = append(out, st)
		}
	}
	return out
}
