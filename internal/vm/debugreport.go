package vm

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"time"
)

// WriteDebugReport writes where a running machine stands, for a guest that
// stopped making progress: its VM exits by reason over window, then, if it
// pauses within pauseLimit, each vCPU's CS:RIP and each virtio queue's
// device positions beside the avail and used indices in guest memory (a
// lost kick shows as avail idx ahead of last_avail, a lost completion as
// used idx behind next_used), and it resumes the machine. It is what QEMU's
// monitor gives with "info registers" and "info virtio-queue-status".
func (m *Machine) WriteDebugReport(w io.Writer, window, pauseLimit time.Duration) error {
	before := m.ExitsByReason()
	time.Sleep(window)
	after := m.ExitsByReason()
	reasons := make([]string, 0, len(after))
	for k := range after {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	fmt.Fprintf(w, "machine report: VM exits in %v:", window)
	for _, k := range reasons {
		if d := after[k] - before[k]; d > 0 {
			fmt.Fprintf(w, " %s=%d", k, d)
		}
	}
	fmt.Fprintln(w)

	type result struct {
		st  *MachineState
		err error
	}
	done := make(chan result, 1)
	go func() {
		if err := m.Pause(); err != nil {
			done <- result{err: err}
			return
		}
		st, err := m.SaveState()
		m.Resume()
		done <- result{st, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(pauseLimit):
		return fmt.Errorf("machine report: the machine did not pause within %v (a vCPU or device worker is stuck)", pauseLimit)
	}
	if r.err != nil {
		return fmt.Errorf("machine report: pause and save: %w", r.err)
	}
	for i, c := range r.st.VCPUs {
		fmt.Fprintf(w, "machine report: vCPU %d: CS:RIP %04x:%#x RFLAGS %#x CR0 %#x mp_state %d\n",
			i, c.Sregs.CS.Selector, c.Regs.RIP, c.Regs.RFLAGS, c.Sregs.CR0, c.MPState)
	}
	for _, v := range r.st.Virtio {
		for qi, q := range v.Transport.Queues {
			if !q.Enable {
				continue
			}
			fmt.Fprintf(w, "machine report: virtio %s queue %d (size %d)", v.ID, qi, q.Size)
			if q.Ring != nil {
				fmt.Fprintf(w, ": device last_avail %d next_used %d signalled %d used_flags %#x broken %v",
					q.Ring.LastAvail, q.Ring.NextUsed, q.Ring.SignalledUsed, q.Ring.UsedFlags, q.Ring.Broken)
			}
			if a, err := m.Memory().Slice(q.Driver, 4); err == nil {
				fmt.Fprintf(w, "; guest avail flags %#x idx %d", binary.LittleEndian.Uint16(a), binary.LittleEndian.Uint16(a[2:]))
			}
			if u, err := m.Memory().Slice(q.Device, 4); err == nil {
				fmt.Fprintf(w, ", used flags %#x idx %d", binary.LittleEndian.Uint16(u), binary.LittleEndian.Uint16(u[2:]))
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}
