package vm

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// stallReport writes where a machine that stopped making progress stood,
// at once to stderr (a lab host may not outlive the test's clean-up): its
// exits by reason over two seconds, every goroutine of the test binary
// (the device workers among them), then, if it pauses within seconds,
// each vCPU's CS:RIP and each virtio queue's positions beside the indices
// in guest memory. An intermittent SeaBIOS disk-read stall in TCG lab
// hosts (docs/firmware.md) left nothing else to go on: a lost kick shows
// as avail idx ahead of the device's last_avail, a lost completion as used
// idx behind next_used.
func stallReport(t *testing.T, m *Machine) {
	t.Helper()
	before := m.ExitsByReason()
	time.Sleep(2 * time.Second)
	after := m.ExitsByReason()
	var b strings.Builder
	fmt.Fprintf(&b, "STUCK MACHINE (%s): exits in 2 s:", t.Name())
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			fmt.Fprintf(&b, " %s=%d", k, d)
		}
	}
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	fmt.Fprintf(&b, "\n%s\n", buf)
	os.Stderr.WriteString(b.String())

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
		done <- result{st, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		os.Stderr.WriteString("STUCK MACHINE: it did not pause and save within 20 s\n")
		return
	}
	if r.err != nil {
		fmt.Fprintf(os.Stderr, "STUCK MACHINE: pause and save: %v\n", r.err)
		return
	}
	b.Reset()
	for i, c := range r.st.VCPUs {
		fmt.Fprintf(&b, "STUCK MACHINE: vCPU %d: CS:RIP %04x:%#x RFLAGS %#x CR0 %#x mp_state %d\n",
			i, c.Sregs.CS.Selector, c.Regs.RIP, c.Regs.RFLAGS, c.Sregs.CR0, c.MPState)
	}
	for _, v := range r.st.Virtio {
		for qi, q := range v.Transport.Queues {
			if !q.Enable {
				continue
			}
			fmt.Fprintf(&b, "STUCK MACHINE: virtio %s queue %d (size %d)", v.ID, qi, q.Size)
			if q.Ring != nil {
				fmt.Fprintf(&b, ": device last_avail %d next_used %d signalled %d used_flags %#x broken %v",
					q.Ring.LastAvail, q.Ring.NextUsed, q.Ring.SignalledUsed, q.Ring.UsedFlags, q.Ring.Broken)
			}
			if a, err := m.Memory().Slice(q.Driver, 4); err == nil {
				fmt.Fprintf(&b, "; guest avail flags %#x idx %d", binary.LittleEndian.Uint16(a), binary.LittleEndian.Uint16(a[2:]))
			}
			if u, err := m.Memory().Slice(q.Device, 4); err == nil {
				fmt.Fprintf(&b, ", used flags %#x idx %d", binary.LittleEndian.Uint16(u), binary.LittleEndian.Uint16(u[2:]))
			}
			b.WriteString("\n")
		}
	}
	os.Stderr.WriteString(b.String())
}
