package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/govisor/govisor/internal/vmmapi"
)

// Socket names in a VM's directory: every VMM is spawned with them, so the
// agent (and an agent that adopts the VMM later) finds them there.
const (
	apiSockName     = "api.sock"
	consoleSockName = "console.sock"
)

// errNoEndpoint is returned when a VMM's API lacks an endpoint (an older
// VMM binary): callers fall back or skip the feature.
var errNoEndpoint = errors.New("agent: the VMM does not offer this endpoint")

// vmmConn talks to one VMM's control API socket (package vmmapi).
type vmmConn struct {
	sock string
	hc   *http.Client
}

// vmm returns a connection to the VMM API of the VM name.
func (a *Agent) vmm(name string) *vmmConn {
	return newVMMConn(filepath.Join(a.vmDir(name), apiSockName))
}

func newVMMConn(sock string) *vmmConn {
	return &vmmConn{sock: sock, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// call sends one request and decodes a 200 answer into out (if not nil).
func (c *vmmConn) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("agent: VMM API %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vmm"+path, rd)
	if err != nil {
		return fmt.Errorf("agent: VMM API %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent: VMM API %s %s on %s: %w", method, path, c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: %s %s", errNoEndpoint, method, path)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		return fmt.Errorf("agent: VMM %s %s: %s", method, path, e.Error)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("agent: VMM %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// short runs one quick VMM call with a bounded wait: a hung VMM must not
// hang the agent.
func (c *vmmConn) short(method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.call(ctx, method, path, body, out)
}

func (c *vmmConn) info() (vmmapi.Info, error) {
	var i vmmapi.Info
	return i, c.short(http.MethodGet, "/vm", nil, &i)
}

func (c *vmmConn) pause() error    { return c.short(http.MethodPut, "/vm/pause", nil, nil) }
func (c *vmmConn) resume() error   { return c.short(http.MethodPut, "/vm/resume", nil, nil) }
func (c *vmmConn) shutdown() error { return c.short(http.MethodPut, "/vm/shutdown", nil, nil) }

// snapshot saves the VM to dir; memory makes it slow, so it gets longer.
func (c *vmmConn) snapshot(ctx context.Context, dir string) error {
	return c.call(ctx, http.MethodPut, "/snapshot", vmmapi.SnapshotRequest{Dir: dir}, nil)
}

// migrate runs a live migration to the VMM listening at req.To; it returns
// when the migration ended.
func (c *vmmConn) migrate(ctx context.Context, req vmmapi.MigrateRequest) (vmmapi.MigrateResult, error) {
	var r vmmapi.MigrateResult
	return r, c.call(ctx, http.MethodPut, "/migrate", req, &r)
}

// progress reads the VMM's latest outgoing migration (GET /migrate).
func (c *vmmConn) progress() (vmmapi.MigrateProgress, error) {
	var p vmmapi.MigrateProgress
	return p, c.short(http.MethodGet, "/migrate", nil, &p)
}

// cancelMigration stops the VMM's outgoing migration; the VM runs on.
func (c *vmmConn) cancelMigration() error { return c.short(http.MethodDelete, "/migrate", nil, nil) }
