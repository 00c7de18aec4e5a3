package blk_test

import (
	"testing"

	"github.com/govisor/govisor/internal/virtio/blk"
)

// TestStats checks that each kind of request moves its own counters.
func TestStats(t *testing.T) {
	type req struct {
		typ     uint32
		sector  uint64
		payload int
		in      uint32
	}
	tests := []struct {
		name string
		reqs []req
		want blk.Stats
	}{
		{"nothing", nil, blk.Stats{}},
		{"one write", []req{{blk.TypeOut, 0, 4096, 0}}, blk.Stats{WriteOps: 1, WriteBytes: 4096}},
		{"reads and writes", []req{{blk.TypeOut, 8, 1024, 0}, {blk.TypeIn, 8, 0, 1024}, {blk.TypeIn, 0, 0, 512}},
			blk.Stats{WriteOps: 1, WriteBytes: 1024, ReadOps: 2, ReadBytes: 1536}},
		{"flush", []req{{blk.TypeFlush, 0, 0, 0}, {blk.TypeFlush, 0, 0, 0}}, blk.Stats{FlushOps: 2}},
		{"beyond the disk", []req{{blk.TypeIn, diskSize / 512, 0, 512}}, blk.Stats{ReadOps: 1, Errors: 1}},
		{"unsupported type", []req{{99, 0, 0, 0}}, blk.Stats{Errors: 1}},
		{"get id is not I/O", []req{{blk.TypeGetID, 0, 0, 20}}, blk.Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, blk.Options{}, allFeat)
			for _, q := range tt.reqs {
				var payload []byte
				if q.payload > 0 {
					payload = pattern(q.payload, 1)
				}
				r.do(t, 0, q.typ, q.sector, payload, q.in)
			}
			got := r.dev.Stats()
			if (got.ReadOps > 0) != (got.ReadLatencyNs > 0) || (got.WriteOps > 0) != (got.WriteLatencyNs > 0) ||
				(got.FlushOps > 0) != (got.FlushLatencyNs > 0) {
				t.Errorf("latency sums do not follow the counts: %+v", got)
			}
			got.ReadLatencyNs, got.WriteLatencyNs, got.FlushLatencyNs = 0, 0, 0
			if got != tt.want {
				t.Errorf("Stats() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
