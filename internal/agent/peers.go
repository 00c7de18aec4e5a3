package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/govisor/govisor/internal/apitoken"
	"os"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
)

// ErrNoPeer is returned when another host's agent cannot be reached.
var ErrNoPeer = errors.New("agent: cannot reach the other host's agent")

// peerTLS is the TLS configuration for other agents' TCP APIs.
func (a *Agent) peerTLS() (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range []string{a.cfg.PeerCA, a.cfg.TLSCert} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("agent: peer CA: %w", err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// peerToken is the bearer token sent to other agents: the first admin
// token of the token file (peers start incoming migrations and forward
// requests of every kind).
func (a *Agent) peerToken() string {
	if a.cfg.PeerToken != "" || a.cfg.TokenFile == "" {
		return a.cfg.PeerToken
	}
	if f, err := apitoken.Open(a.cfg.TokenFile); err == nil {
		for _, t := range f.Tokens() {
			if t.Role == apitoken.Admin {
				return t.Secret
			}
		}
	}
	return ""
}

// peer returns a client for the agent of host, registered in etcd. Each
// address the agent registered is tried; the answer of GET /v1/host must
// name that host and agent (a Unix socket path may exist on this machine
// and belong to another agent, or to this one).
func (a *Agent) peer(ctx context.Context, hostName string) (*client.Client, error) {
	hosts, err := a.st.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	var h *api.Host
	for i := range hosts {
		if hosts[i].Name == hostName {
			h = &hosts[i]
		}
	}
	if h == nil {
		return nil, fieldErr("host", fmt.Sprintf("%q: no live agent on that host (see GET /v1/hosts)", hostName))
	}
	var errs []string
	for _, addr := range h.API {
		o := client.Options{}
		switch {
		case strings.HasPrefix(addr, "unix:"):
			o.Socket = strings.TrimPrefix(addr, "unix:")
		case strings.HasPrefix(addr, "tcp:"):
			tc, err := a.peerTLS()
			if err != nil {
				return nil, err
			}
			o.URL, o.Token, o.TLSConfig = "https://"+strings.TrimPrefix(addr, "tcp:"), a.peerToken(), tc
		default:
			continue
		}
		c, err := client.New(o)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := c.Host(cctx)
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if got.Name == h.Name && got.AgentID == h.AgentID {
			return c, nil
		}
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Sprintf("it registered the addresses %v", h.API))
	}
	return nil, fmt.Errorf("%w on %s: %s", ErrNoPeer, hostName, strings.Join(errs, "; "))
}
