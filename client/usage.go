package client

import (
	"context"
	"net/url"
	"time"

	"github.com/govisor/govisor/api"
)

// UsageQuery selects utilization samples for Usage.
type UsageQuery struct {
	From, To time.Time     // the window; zero To: now, zero From: 24 hours before To
	VM       string        // only this VM (and the host); empty: all
	Step     time.Duration // at most one sample per VM per step; 0: the agent's choice
}

// Usage returns the agent's utilization samples of its host and VMs.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (api.UsageReport, error) {
	v := url.Values{}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.VM != "" {
		v.Set("vm", q.VM)
	}
	if q.Step > 0 {
		v.Set("step", q.Step.String())
	}
	path := "/v1/usage"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var rep api.UsageReport
	_, err := c.Do(ctx, "GET", path, nil, &rep)
	return rep, err
}
