package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/govisor/govisor/api"
)

// AuditQuery selects audit records for Audit.
type AuditQuery struct {
	Since time.Time // only records at or after Since (zero: all)
	Who   string    // only this token's records (empty: all)
	Limit int       // at most the Limit newest (0: the agent's default, 1000)
}

// Audit returns the agent's audit log of changes, oldest first (admin
// tokens only).
func (c *Client) Audit(ctx context.Context, q AuditQuery) (api.AuditList, error) {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339))
	}
	if q.Who != "" {
		v.Set("who", q.Who)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/v1/audit"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var l api.AuditList
	_, err := c.Do(ctx, "GET", path, nil, &l)
	return l, err
}
