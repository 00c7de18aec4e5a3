package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/govisor/govisor/internal/agent/httpapi"
	"github.com/govisor/govisor/internal/apiguard"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/audit"
	"github.com/govisor/govisor/internal/webauth"
	"github.com/govisor/govisor/internal/webui"
)

const maxBody = httpapi.MaxBody

// serve starts the API listeners.
func (a *Agent) serve() error {
	h, err := a.routes()
	if err != nil {
		return err
	}
	if a.cfg.Socket != "" {
		l, err := listenUnix(a.cfg.Socket)
		if err != nil {
			return err
		}
		// Only the agent's user reaches the socket: no login.
		a.start(l, webauth.Open(forwardedCaller(h)))
	}
	if a.cfg.Listen != "" {
		if a.cfg.TLSCert == "" || a.cfg.TLSKey == "" || a.cfg.TokenFile == "" {
			return errors.New("agent: --listen needs --tls-cert, --tls-key and --token-file: the TCP API requires TLS and bearer tokens")
		}
		tokens, err := apitoken.Open(a.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("agent: TLS certificate: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if a.cfg.PeerCA != "" {
			// Other agents present their certificate (peerTLS): verified
			// against the cluster's CA, it lets them call for a user.
			pool, err := loadPool(a.cfg.PeerCA)
			if err != nil {
				return err
			}
			tc.ClientAuth, tc.ClientCAs = tls.VerifyClientCertIfGiven, pool
		}
		l, err := tls.Listen("tcp", a.cfg.Listen, tc)
		if err != nil {
			return fmt.Errorf("agent: listen on %s: %w", a.cfg.Listen, err)
		}
		auth := &webauth.Auth{Lookup: tokens.Lookup, Sessions: webauth.NewSessions(a.cfg.SessionTTL)}
		a.start(l, auth.Handler(forwardedCaller(h)))
	}
	return nil
}

func (a *Agent) start(l net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.RegisterOnShutdown(a.evStop)
	a.http = append(a.http, s)
	addr := l.Addr().String()
	if l.Addr().Network() == "unix" {
		if abs, err := filepath.Abs(addr); err == nil {
			addr = abs
		}
	}
	a.addrs = append(a.addrs, l.Addr().Network()+":"+addr)
	go s.Serve(l)
}

// listenUnix listens on path with mode 0600 in a 0700 directory (only the
// agent's user, root in production, may drive the agent). A stale socket
// left by a dead agent is replaced; a live one is an error.
func listenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: socket directory: %w", err)
		}
	}
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: another agent is serving on %s", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("agent: chmod %s: %w", path, err)
	}
	return l, nil
}

// Routes are the patterns ("METHOD /path") the agent's API serves (see
// httpapi.Routes).
func Routes() []string { return httpapi.Routes() }

// routes is the API over this agent's services, guarded (package
// apiguard: roles, body sizes, rates, the audit log in the state
// directory), and the web console's files under /ui/ (package webui).
func (a *Agent) routes() (http.Handler, error) {
	log, err := audit.Open(filepath.Join(a.cfg.StateDir, audit.FileName))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.audit = log
	g := &apiguard.Guard{Audit: log, MaxBody: maxBody, Logf: func(f string, args ...any) { a.log.Error(fmt.Sprintf(f, args...)) }}
	if a.cfg.RateLimit > 0 {
		burst := a.cfg.RateBurst
		if burst <= 0 {
			burst = int(2 * a.cfg.RateLimit)
		}
		g.Limit = apiguard.NewLimiter(a.cfg.RateLimit, burst)
	}
	m := http.NewServeMux()
	m.Handle("/", httpapi.New(a.Services(), httpapi.Options{Metrics: a.metricsHandler(), Streams: a.evCtx, Guard: g, Audit: log}))
	ui := webui.Handler()
	m.Handle(webui.Prefix, ui)
	m.Handle("/ui", ui)
	return m, nil
}

// loadPool reads the PEM certificates of file into a pool.
func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("agent: peer CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("agent: peer CA %s holds no PEM certificate", file)
	}
	return pool, nil
}
