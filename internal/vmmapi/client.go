package vmmapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// ErrNoEndpoint is returned when the VMM has no such endpoint (an older VMM
// binary): callers fall back or skip the feature.
var ErrNoEndpoint = errors.New("vmmapi: the VMM does not offer this endpoint")

// Answers are bounded: the VMM runs the guest, so the host agent does not
// trust it to keep them small.
const (
	maxAnswer      = 1 << 20
	maxErrorAnswer = 1 << 16
)

// Client talks to one VMM's API socket. Each call ends when its context
// does; without a deadline it waits as long as the VMM takes.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the API socket at path.
func NewClient(path string) *Client {
	return &Client{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Client) call(ctx context.Context, method, path string, body any) (Info, error) {
	var info Info
	return info, c.do(ctx, method, path, body, &info)
}

// do sends one request and decodes a 200 answer into out (if not nil).
// Another status is an error with the API's message; a 404 or 405 without
// one (the server's router answered) is ErrNoEndpoint.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("vmmapi: %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vmm"+path, rd)
	if err != nil {
		return fmt.Errorf("vmmapi: %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("vmmapi: %s %s: %w", method, path, err) // names the socket
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer))
		var e apiError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				return fmt.Errorf("%w: %s %s", ErrNoEndpoint, method, path)
			}
			e.Error = resp.Status
			if t := bytes.TrimSpace(b); len(t) > 0 {
				e.Error += ": " + string(t)
			}
		}
		return fmt.Errorf("vmmapi: %s %s: %s", method, path, e.Error)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("vmmapi: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Info returns the VM's state.
func (c *Client) Info(ctx context.Context) (Info, error) { return c.call(ctx, "GET", "/vm", nil) }

// Pause pauses the VM.
func (c *Client) Pause(ctx context.Context) (Info, error) {
	return c.call(ctx, "PUT", "/vm/pause", nil)
}

// Resume resumes the VM.
func (c *Client) Resume(ctx context.Context) (Info, error) {
	return c.call(ctx, "PUT", "/vm/resume", nil)
}

// Stop ends the VM.
func (c *Client) Stop(ctx context.Context) (Info, error) { return c.call(ctx, "PUT", "/vm/stop", nil) }

// Shutdown presses the VM's ACPI power button.
func (c *Client) Shutdown(ctx context.Context) (Info, error) {
	return c.call(ctx, "PUT", "/vm/shutdown", nil)
}

// Migrate live-migrates the VM (see MigrateRequest).
// It returns when the migration has ended; MigrateProgress and
// CancelMigrate may be called meanwhile.
func (c *Client) Migrate(ctx context.Context, req MigrateRequest) (MigrateResult, error) {
	var res MigrateResult
	return res, c.do(ctx, "PUT", "/migrate", req, &res)
}

// MigrateProgress returns the state of the latest outgoing migration; it
// answers while a Migrate call is under way.
func (c *Client) MigrateProgress(ctx context.Context) (MigrateProgress, error) {
	var p MigrateProgress
	return p, c.do(ctx, "GET", "/migrate", nil, &p)
}

// CancelMigrate cancels the running outgoing migration; the VM keeps
// running on this VMM. The Migrate call under way then returns an error.
func (c *Client) CancelMigrate(ctx context.Context) error {
	return c.do(ctx, "DELETE", "/migrate", nil, nil)
}

// SetBalloon sets the balloon's target size.
func (c *Client) SetBalloon(ctx context.Context, mib uint64) (Info, error) {
	return c.call(ctx, "PUT", "/vm/balloon", BalloonRequest{TargetMiB: mib})
}

// Snapshot saves the VM to dir.
func (c *Client) Snapshot(ctx context.Context, dir string) (Info, error) {
	return c.call(ctx, "PUT", "/snapshot", SnapshotRequest{Dir: dir})
}

// Stats returns the VMM's activity counters.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	return s, c.do(ctx, "GET", "/stats", nil, &s)
}

// Disks lists the VM's disks.
func (c *Client) Disks(ctx context.Context) ([]Disk, error) {
	var ds []Disk
	return ds, c.do(ctx, "GET", "/vm/disks", nil, &ds)
}

// AttachDisk hot-plugs a disk into the VM.
func (c *Client) AttachDisk(ctx context.Context, req DiskRequest) (Disk, error) {
	var d Disk
	return d, c.do(ctx, "PUT", "/vm/disks", req, &d)
}

// DetachDisk asks the guest to release the hot-plugged disk name.
func (c *Client) DetachDisk(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/vm/disks/"+url.PathEscape(name), nil, nil)
}
