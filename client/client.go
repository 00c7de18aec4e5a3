// Package client is a typed Go client for the govisor REST API (see
// api/openapi.yaml), over the agent's Unix socket or over TCP with TLS and a
// bearer token. The govisor CLI uses it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
)

// DefaultSocket is where `govisor serve` listens by default.
const DefaultSocket = "/run/govisor/govisor.sock"

// Errors an *Error matches with errors.Is, by HTTP status.
var (
	ErrInvalid      = errors.New("client: invalid request")                  // 400
	ErrUnauthorized = errors.New("client: unauthorized")                     // 401
	ErrForbidden    = errors.New("client: the token's role may not do this") // 403
	ErrTooLarge     = errors.New("client: request body too large")           // 413
	ErrRateLimited  = errors.New("client: too many requests")                // 429
	ErrNotFound     = errors.New("client: not found")                        // 404
	ErrConflict     = errors.New("client: conflict")                         // 409
	ErrTimeout      = errors.New("client: agent timed out")                  // 504
	ErrBadGateway   = errors.New("client: the VMM or a peer agent failed")   // 502
	ErrServer       = errors.New("client: agent internal error")             // other 5xx
)

// Error is an API error response.
type Error struct {
	StatusCode int
	Message    string
	Field      string // the request field the agent blamed, if any
	// RetryAfter is how long the agent asked to wait (429: its
	// Retry-After header), if it said.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Is matches the sentinel errors by status code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInvalid:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrTimeout:
		return e.StatusCode == http.StatusGatewayTimeout
	case ErrBadGateway:
		return e.StatusCode == http.StatusBadGateway
	case ErrServer:
		return e.StatusCode >= 500 && e.StatusCode != http.StatusGatewayTimeout
	}
	return false
}

// Options says how to reach the agent: Socket, or URL (https://host:port).
type Options struct {
	Socket    string
	URL       string
	Token     string      // bearer token (required by the agent on TCP)
	TLSConfig *tls.Config // for URL; nil: system roots
	// Header is sent with every request, e.g. the user an agent calls
	// another agent for.
	Header http.Header
}

// Client talks to one agent.
type Client struct {
	base   string
	token  string
	header http.Header
	hc     *http.Client
	where  string
}

// New makes a client; it does not connect until the first call.
func New(o Options) (*Client, error) {
	switch {
	case o.Socket != "" && o.URL != "":
		return nil, errors.New("client: give a socket or a URL, not both")
	case o.URL != "":
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("client: URL %q: want https://HOST:PORT", o.URL)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLSConfig
		return &Client{base: strings.TrimRight(o.URL, "/"), token: o.Token, header: o.Header.Clone(), hc: &http.Client{Transport: tr}, where: o.URL}, nil
	}
	sock := o.Socket
	if sock == "" {
		sock = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}
	return &Client{base: "http://govisor", token: o.Token, header: o.Header.Clone(), hc: &http.Client{Transport: tr}, where: sock}, nil
}

// Do sends a request with an optional JSON body (or raw io.Reader) and
// decodes a JSON answer into out (if not nil); it returns the response
// headers. Non-2xx answers become *Error.
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) (http.Header, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("client: encode request: %w", err)
		}
		rd = bytes.NewReader(j)
	}
	resp, err := c.send(ctx, method, path, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return resp.Header, nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	return resp.Header, nil
}

// send performs a request and turns error statuses into *Error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: cannot reach the govisor agent at %s (is `govisor serve` running?): %w", c.where, err)
	}
	if resp.StatusCode >= 300 {
		return nil, responseError(method, path, resp)
	}
	return resp, nil
}

func vmPath(name string) string { return "/v1/vms/" + url.PathEscape(name) }

// CreateVM defines a VM on the agent's host and, when start is set, boots it.
func (c *Client) CreateVM(ctx context.Context, spec api.VMSpec, start bool) (api.VM, error) {
	return c.CreateVMOn(ctx, spec, start, "")
}

// CreateVMOn defines a VM on host: "auto" for the host the cluster's
// placement picks, a host's name, or "" for the agent's host.
func (c *Client) CreateVMOn(ctx context.Context, spec api.VMSpec, start bool, host string) (api.VM, error) {
	var v api.VM
	q := url.Values{}
	if !start {
		q.Set("start", "false")
	}
	if host != "" {
		q.Set("host", host)
	}
	p := "/v1/vms"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	_, err := c.Do(ctx, http.MethodPost, p, spec, &v)
	return v, err
}

// ApplyVM creates the VM or updates its definition; result is "created",
// "updated" or "unchanged".
func (c *Client) ApplyVM(ctx context.Context, spec api.VMSpec) (v api.VM, result string, err error) {
	h, err := c.Do(ctx, http.MethodPut, vmPath(spec.Name), spec, &v)
	if err != nil {
		return v, "", err
	}
	return v, h.Get("Govisor-Apply"), nil
}

// ListVMs lists every VM.
func (c *Client) ListVMs(ctx context.Context) ([]api.VM, error) {
	var l api.VMList
	_, err := c.Do(ctx, http.MethodGet, "/v1/vms", nil, &l)
	return l.Items, err
}

// GetVM reads one VM.
func (c *Client) GetVM(ctx context.Context, name string) (api.VM, error) {
	var v api.VM
	_, err := c.Do(ctx, http.MethodGet, vmPath(name), nil, &v)
	return v, err
}

// Action runs start, stop, force-stop, restart, reboot, pause or resume; a non-zero wait makes
// the agent answer once the VM got there (or the time is up).
func (c *Client) Action(ctx context.Context, name, action string, wait time.Duration) (api.VM, error) {
	var v api.VM
	p := vmPath(name) + "/" + url.PathEscape(action)
	if wait > 0 {
		p += "?wait=" + url.QueryEscape(wait.String())
	}
	_, err := c.Do(ctx, http.MethodPost, p, nil, &v)
	return v, err
}

// DeleteVM removes a stopped VM.
func (c *Client) DeleteVM(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, vmPath(name), nil, nil)
	return err
}

// Console returns the VM's console output so far (its last MiB).
func (c *Client) Console(ctx context.Context, name string) ([]byte, error) {
	var b bytes.Buffer
	_, err := c.Do(ctx, http.MethodGet, vmPath(name)+"/console", nil, &b)
	return b.Bytes(), err
}

// Host describes the agent's host.
func (c *Client) Host(ctx context.Context) (api.Host, error) {
	var h api.Host
	_, err := c.Do(ctx, http.MethodGet, "/v1/host", nil, &h)
	return h, err
}

// Hosts lists the hosts with a live agent.
func (c *Client) Hosts(ctx context.Context) ([]api.Host, error) {
	var l api.HostList
	_, err := c.Do(ctx, http.MethodGet, "/v1/hosts", nil, &l)
	return l.Items, err
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var b bytes.Buffer
	_, err := c.Do(ctx, http.MethodGet, "/metrics", nil, &b)
	return b.Bytes(), err
}

// Events calls fn for every state change after revision since (0: from
// now) until ctx ends, fn fails, or the agent closes the stream.
func (c *Client) Events(ctx context.Context, since int64, fn func(api.Event) error) error {
	p := "/v1/events"
	if since > 0 {
		p += fmt.Sprintf("?since=%d", since)
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e api.Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("client: bad event %q: %w", data, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}

// Pause pauses a running VM's vCPUs.
func (c *Client) Pause(ctx context.Context, name string) (api.VM, error) {
	return c.Action(ctx, name, "pause", 0)
}

// Resume resumes a paused VM.
func (c *Client) Resume(ctx context.Context, name string) (api.VM, error) {
	return c.Action(ctx, name, "resume", 0)
}

// Reboot resets a running VM (a new VMM boots it at once); a non-zero
// wait makes the agent answer once it runs again.
func (c *Client) Reboot(ctx context.Context, name string, wait time.Duration) (api.VM, error) {
	return c.Action(ctx, name, "reboot", wait)
}

// Snapshot saves a running or paused VM's state as snapshot req.Name.
func (c *Client) Snapshot(ctx context.Context, name string, req api.SnapshotRequest) (api.Snapshot, error) {
	var s api.Snapshot
	_, err := c.Do(ctx, http.MethodPost, vmPath(name)+"/snapshot", req, &s)
	return s, err
}

// Snapshots lists a VM's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, name string) ([]api.Snapshot, error) {
	var l api.SnapshotList
	_, err := c.Do(ctx, http.MethodGet, vmPath(name)+"/snapshots", nil, &l)
	return l.Items, err
}

// Restore resumes the VM from one of its snapshots; a non-zero wait makes
// the agent answer once it runs from it.
func (c *Client) Restore(ctx context.Context, name, snapshot string, wait time.Duration) (api.VM, error) {
	var v api.VM
	p := vmPath(name) + "/restore"
	if wait > 0 {
		p += "?wait=" + url.QueryEscape(wait.String())
	}
	_, err := c.Do(ctx, http.MethodPost, p, api.RestoreRequest{Snapshot: snapshot}, &v)
	return v, err
}

// Migrate live-migrates a running VM to another host; it returns when the
// migration ended (the VM then runs on req.Host) or failed (it still runs
// where it was).
func (c *Client) Migrate(ctx context.Context, name string, req api.MigrateRequest) (api.VM, error) {
	var v api.VM
	_, err := c.Do(ctx, http.MethodPost, vmPath(name)+"/migrate", req, &v)
	return v, err
}

// CancelMigrate stops the VM's running live migration; the VM keeps
// running where it was.
func (c *Client) CancelMigrate(ctx context.Context, name string) (api.VM, error) {
	var v api.VM
	_, err := c.Do(ctx, http.MethodDelete, vmPath(name)+"/migrate", nil, &v)
	return v, err
}

// Incoming asks a destination host's agent to start a VMM waiting for a
// live migration of the VM (agent to agent).
func (c *Client) Incoming(ctx context.Context, name string, req api.IncomingRequest) (api.Incoming, error) {
	var in api.Incoming
	_, err := c.Do(ctx, http.MethodPost, vmPath(name)+"/incoming", req, &in)
	return in, err
}

// IncomingState asks the agent where a live migration of VM name to its
// host stands (agent to agent; api.IncomingArrived once the guest runs
// there).
func (c *Client) IncomingState(ctx context.Context, name string) (api.Incoming, error) {
	var in api.Incoming
	_, err := c.Do(ctx, http.MethodGet, vmPath(name)+"/incoming", nil, &in)
	return in, err
}

// CancelIncoming removes the destination VMM of a failed migration (agent
// to agent).
func (c *Client) CancelIncoming(ctx context.Context, name string) error {
	_, err := c.Do(ctx, http.MethodDelete, vmPath(name)+"/incoming", nil, nil)
	return err
}

// SetMaintenance asks for host to enter (on) or leave maintenance mode and
// returns the host's record.
func (c *Client) SetMaintenance(ctx context.Context, host string, on bool) (api.Host, error) {
	var h api.Host
	_, err := c.Do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(host)+"/maintenance", api.MaintenanceRequest{Maintenance: on}, &h)
	return h, err
}

// Settings reads the cluster-wide settings.
func (c *Client) Settings(ctx context.Context) (api.ClusterSettings, error) {
	var cs api.ClusterSettings
	_, err := c.Do(ctx, http.MethodGet, "/v1/cluster/settings", nil, &cs)
	return cs, err
}

// PutSettings replaces the cluster-wide settings.
func (c *Client) PutSettings(ctx context.Context, cs api.ClusterSettings) (api.ClusterSettings, error) {
	var out api.ClusterSettings
	_, err := c.Do(ctx, http.MethodPut, "/v1/cluster/settings", cs, &out)
	return out, err
}

// ClusterEvents returns the newest limit cluster events (0: all kept),
// oldest first.
func (c *Client) ClusterEvents(ctx context.Context, limit int) ([]api.ClusterEvent, error) {
	var l api.ClusterEventList
	_, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/cluster/events?limit=%d", limit), nil, &l)
	return l.Items, err
}

// AddMember asks the cluster to let a host join (govisor serve --join).
func (c *Client) AddMember(ctx context.Context, req api.JoinRequest) (api.JoinInfo, error) {
	var info api.JoinInfo
	_, err := c.Do(ctx, http.MethodPost, "/v1/cluster/members", req, &info)
	return info, err
}

// BalancePlan is the load balancer's plan for the cluster now.
func (c *Client) BalancePlan(ctx context.Context) (api.BalancePlan, error) {
	var p api.BalancePlan
	_, err := c.Do(ctx, http.MethodGet, "/v1/cluster/balance", nil, &p)
	return p, err
}

// Balance plans and carries out the load balancer's migrations.
func (c *Client) Balance(ctx context.Context) (api.BalancePlan, error) {
	var p api.BalancePlan
	_, err := c.Do(ctx, http.MethodPost, "/v1/cluster/balance", nil, &p)
	return p, err
}
