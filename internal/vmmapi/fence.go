package vmmapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// Fencer is a Controller whose VMM has a self-fencing watchdog (package
// fence): the host agent feeds it while it can confirm the host's lease.
type Fencer interface {
	// Fence arms the watchdog, or moves its deadline, to ttl from now;
	// 0 disarms it. It fails once the watchdog has fired.
	Fence(ttl time.Duration) error
	// FenceUntil arms the watchdog, or moves its deadline, to deadline
	// (CLOCK_MONOTONIC nanoseconds); a deadline passed fires it.
	FenceUntil(deadline int64) error
	// FenceStatus reports the watchdog's state.
	FenceStatus() FenceStatus
}

// FenceRequest is the body of PUT /fence.
type FenceRequest struct {
	TTLMS int64 `json:"ttl_ms,omitempty"` // 0 disarms (unless DeadlineMonoNS is set)
	// DeadlineMonoNS feeds the watchdog up to this CLOCK_MONOTONIC time in
	// nanoseconds (fence.MonoNow: one clock for the host's processes), so
	// that a feed delayed on its way cannot move the deadline past what
	// the sender meant. It replaces TTLMS when set.
	DeadlineMonoNS int64 `json:"deadline_mono_ns,omitempty"`
}

// FenceStatus is the body GET and PUT /fence answer with.
type FenceStatus struct {
	Armed       bool   `json:"armed"`
	RemainingMS int64  `json:"remaining_ms,omitempty"`
	Fired       bool   `json:"fired"`
	Reason      string `json:"reason,omitempty"`
}

func registerFenceRoutes(mux *http.ServeMux, c Controller) {
	reply := replyJSON
	f, ok := c.(Fencer)
	if !ok {
		unsupported := func(w http.ResponseWriter, r *http.Request) {
			reply(w, http.StatusNotImplemented, apiError{"this VMM has no fencing watchdog"})
		}
		mux.HandleFunc("GET /fence", unsupported)
		mux.HandleFunc("PUT /fence", unsupported)
		return
	}
	mux.HandleFunc("GET /fence", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, f.FenceStatus()) })
	mux.HandleFunc("PUT /fence", func(w http.ResponseWriter, r *http.Request) {
		var req FenceRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<12))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, apiError{`bad fence request: give {"ttl_ms": N} (0 disarms)`})
			return
		}
		feed := func() error { return f.Fence(time.Duration(req.TTLMS) * time.Millisecond) }
		if req.DeadlineMonoNS != 0 {
			feed = func() error { return f.FenceUntil(req.DeadlineMonoNS) }
		}
		if err := feed(); err != nil {
			reply(w, http.StatusConflict, apiError{err.Error()})
			return
		}
		reply(w, http.StatusOK, f.FenceStatus())
	})
}

// Fence feeds the VMM's watchdog: the guest is stopped unless it is fed
// again within ttl (0 disarms it).
func (c *Client) Fence(ctx context.Context, ttl time.Duration) (FenceStatus, error) {
	var s FenceStatus
	return s, c.do(ctx, "PUT", "/fence", FenceRequest{TTLMS: ttl.Milliseconds()}, &s)
}

// FenceUntil feeds the VMM's watchdog up to deadline, CLOCK_MONOTONIC
// nanoseconds on this host (see fence.MonoNow).
func (c *Client) FenceUntil(ctx context.Context, deadline int64) (FenceStatus, error) {
	var s FenceStatus
	return s, c.do(ctx, "PUT", "/fence", FenceRequest{DeadlineMonoNS: deadline}, &s)
}

// FenceStatus reports the VMM's watchdog.
func (c *Client) FenceStatus(ctx context.Context) (FenceStatus, error) {
	var s FenceStatus
	return s, c.do(ctx, "GET", "/fence", nil, &s)
}
