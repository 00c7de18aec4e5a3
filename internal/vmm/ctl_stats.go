package vmm

import "github.com/govisor/govisor/internal/vmmapi"

// Stats returns the running machine's activity counters (empty while no
// machine runs: they count from the start of the current guest).
func (c *machineCtl) Stats() vmmapi.Stats {
	st := vmmapi.Stats{Exits: map[string]uint64{}, Disks: []vmmapi.DiskStats{}, NICs: []vmmapi.NICStats{}}
	m, err := c.get()
	if err != nil {
		return st
	}
	st.Exits = m.ExitsByReason()
	for _, n := range st.Exits {
		st.ExitsTotal += n
	}
	st.EmulatedInstructions = m.EmulatedInstructions()
	if u := m.Console(); u != nil {
		c := u.Counters()
		st.Serial = vmmapi.SerialStats{TxBytes: c.TxBytes, RxBytes: c.RxBytes}
	}
	for _, d := range m.DiskStats() {
		st.Disks = append(st.Disks, vmmapi.DiskStats{Name: d.Name, Path: d.Path,
			ReadOps: d.ReadOps, ReadBytes: d.ReadBytes, ReadLatencyNs: d.ReadLatencyNs,
			WriteOps: d.WriteOps, WriteBytes: d.WriteBytes, WriteLatencyNs: d.WriteLatencyNs,
			FlushOps: d.FlushOps, FlushLatencyNs: d.FlushLatencyNs, DiscardOps: d.DiscardOps, Errors: d.Errors})
	}
	for _, n := range m.NetStats() {
		st.NICs = append(st.NICs, vmmapi.NICStats{Name: n.Name, MAC: n.MAC,
			RxPackets: n.RxPackets, RxBytes: n.RxBytes, RxDrops: n.RxDrops,
			TxPackets: n.TxPackets, TxBytes: n.TxBytes, TxDrops: n.TxDrops})
	}
	return st
}
