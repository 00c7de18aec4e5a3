package blk

import (
	"sync/atomic"
	"time"
)

// Stats are a block device's request counts since it was created, for the
// VMM's statistics and metrics. Latencies are sums, in nanoseconds, from the
// moment a request is taken off its queue to its completion; divide by the
// matching count for a mean.
type Stats struct {
	ReadOps        uint64 `json:"read_ops"`
	ReadBytes      uint64 `json:"read_bytes"`
	ReadLatencyNs  uint64 `json:"read_latency_ns"`
	WriteOps       uint64 `json:"write_ops"`
	WriteBytes     uint64 `json:"write_bytes"`
	WriteLatencyNs uint64 `json:"write_latency_ns"`
	FlushOps       uint64 `json:"flush_ops"`
	FlushLatencyNs uint64 `json:"flush_latency_ns"`
	DiscardOps     uint64 `json:"discard_ops"` // DISCARD and WRITE_ZEROES
	Errors         uint64 `json:"errors"`      // requests that did not complete with OK
}

// counters are Stats kept with atomics: the request workers update them
// concurrently and readers never lock.
type counters struct {
	readOps, readBytes, readNs    atomic.Uint64
	writeOps, writeBytes, writeNs atomic.Uint64
	flushOps, flushNs             atomic.Uint64
	discardOps                    atomic.Uint64
	errors                        atomic.Uint64
}

// account records one finished request of type typ that moved n bytes.
func (c *counters) account(typ uint32, n uint64, status byte, took time.Duration) {
	ns := uint64(max(took, 0))
	if status != StatusOK {
		c.errors.Add(1)
	}
	switch typ {
	case TypeIn:
		c.readOps.Add(1)
		c.readBytes.Add(n)
		c.readNs.Add(ns)
	case TypeOut:
		c.writeOps.Add(1)
		c.writeBytes.Add(n)
		c.writeNs.Add(ns)
	case TypeFlush:
		c.flushOps.Add(1)
		c.flushNs.Add(ns)
	case TypeDiscard, TypeWriteZeroes:
		c.discardOps.Add(1)
	}
}

// Stats returns the device's request counts.
func (d *Device) Stats() Stats {
	c := &d.stats
	return Stats{
		ReadOps: c.readOps.Load(), ReadBytes: c.readBytes.Load(), ReadLatencyNs: c.readNs.Load(),
		WriteOps: c.writeOps.Load(), WriteBytes: c.writeBytes.Load(), WriteLatencyNs: c.writeNs.Load(),
		FlushOps: c.flushOps.Load(), FlushLatencyNs: c.flushNs.Load(),
		DiscardOps: c.discardOps.Load(), Errors: c.errors.Load(),
	}
}
