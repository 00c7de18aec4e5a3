package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/cluster/store"
)

// ErrNoPeer is returned when another host's agent cannot be reached.
var ErrNoPeer = errors.New("agent: cannot reach the other host's agent")

// peerClients reaches the agents of other hosts (consoles, migrations,
// joins) with the credentials of Config: PeerCA, TLSCert, TLSKey,
// PeerToken and TokenFile.
type peerClients struct {
	st      *store.Store // where the agents registered their addresses (nil: Join, which only dials)
	caFiles []string     // PEM files of CAs trusted besides the system roots
	// certFile and keyFile are this agent's certificate, presented to the
	// other agents (caller.go).
	certFile, keyFile string
	// token is the bearer token sent, else the first admin token of
	// tokenFile.
	token, tokenFile string
}

// newPeerClients reaches the agents registered in st with cfg's
// credentials.
func newPeerClients(st *store.Store, cfg Config) *peerClients {
	return &peerClients{st: st, caFiles: []string{cfg.PeerCA, cfg.TLSCert}, certFile: cfg.TLSCert, keyFile: cfg.TLSKey,
		token: cfg.PeerToken, tokenFile: cfg.TokenFile}
}

// peerTLS is the TLS configuration for other agents' TCP APIs: it trusts
// the cluster's CA and presents this agent's certificate, by which the
// other agent knows an agent calls (caller.go).
func (pc *peerClients) peerTLS() (*tls.Config, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range pc.caFiles {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("agent: peer CA: %w", err)
		}
		pool.AppendCertsFromPEM(b)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if pc.certFile != "" && pc.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(pc.certFile, pc.keyFile)
		if err != nil {
			return nil, fmt.Errorf("agent: TLS certificate for peers: %w", err)
		}
		// A server-only certificate would fail the other agent's check
		// of client certificates: then calls go without, as before.
		if clientUse(cert.Leaf) {
			c.Certificates = []tls.Certificate{cert}
		}
	}
	return c, nil
}

// peerToken is the bearer token sent to other agents: the first admin
// token of the token file (peers start incoming migrations and forward
// requests of every kind).
func (pc *peerClients) peerToken() string {
	if pc.token != "" || pc.tokenFile == "" {
		return pc.token
	}
	if f, err := apitoken.Open(pc.tokenFile); err == nil {
		for _, t := range f.Tokens() {
			if t.Role == apitoken.Admin {
				return t.Secret
			}
		}
	}
	return ""
}

// peer returns a client for the agent of host, registered in etcd, that
// calls it for the user ctx carries, if any (CallerHeader). Each
// address the agent registered is tried; the answer of GET /v1/host must
// name that host and agent (a Unix socket path may exist on this machine
// and belong to another agent, or to this one).
func (pc *peerClients) peer(ctx context.Context, hostName string) (*client.Client, error) {
	hosts, err := pc.st.Hosts(ctx)
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
			o.Socket, o.Header = strings.TrimPrefix(addr, "unix:"), callerHeader(ctx)
		case strings.HasPrefix(addr, "tcp:"):
			tc, err := pc.peerTLS()
			if err != nil {
				return nil, err
			}
			o.URL, o.Token, o.TLSConfig = "https://"+strings.TrimPrefix(addr, "tcp:"), pc.peerToken(), tc
			if len(tc.Certificates) > 0 {
				o.Header = callerHeader(ctx) // believed only with the certificate
			}
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

// clientUse reports whether cert may authenticate a TLS client: no
// extended key usage restricts it, or it lists client authentication.
func clientUse(cert *x509.Certificate) bool {
	if cert == nil || len(cert.ExtKeyUsage) == 0 {
		return cert != nil
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}
