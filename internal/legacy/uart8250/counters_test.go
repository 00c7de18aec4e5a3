package uart8250

import (
	"bytes"
	"testing"
)

// TestCounters checks that transmitted and accepted received bytes are
// counted, and refused input is not.
func TestCounters(t *testing.T) {
	tests := []struct {
		name   string
		tx     string
		input  []byte
		loop   bool
		want   Counters
		wantTx string
	}{
		{"idle", "", nil, false, Counters{}, ""},
		{"transmit", "hello\n", nil, false, Counters{TxBytes: 6}, "hello\n"},
		{"receive", "", []byte("abc"), false, Counters{RxBytes: 3}, ""},
		{"receive beyond the buffer", "", bytes.Repeat([]byte{'x'}, RxBufferSize+5), false, Counters{RxBytes: RxBufferSize}, ""},
		{"input refused in loopback", "", []byte("abc"), true, Counters{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			if tt.loop {
				h.outb(regMCR, mcrLoop)
			}
			for i := 0; i < len(tt.tx); i++ {
				h.outb(regData, tt.tx[i])
			}
			if tt.input != nil {
				h.u.Input(tt.input)
			}
			if got := h.u.Counters(); got != tt.want {
				t.Errorf("Counters() = %+v, want %+v", got, tt.want)
			}
			if h.out.String() != tt.wantTx {
				t.Errorf("transmitted %q, want %q", h.out.String(), tt.wantTx)
			}
		})
	}
}
