package vmm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/govisor/govisor/internal/migration"
	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// MigrationAddr splits a migration address, HOST:PORT or unix:PATH, into a
// network for net.Listen or net.Dial and its address.
func MigrationAddr(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, vmmconfig.UnixPrefix); ok {
		if path == "" {
			return "", "", errors.New("unix: needs a socket path, e.g. unix:/run/govisor/vm1.migrate")
		}
		return "unix", path, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", "", fmt.Errorf("%q: give HOST:PORT, or unix:PATH for a VMM on this host: %w", s, err)
	}
	return "tcp", s, nil
}

// listenMigration listens on a migration address. A Unix socket is made
// private to this user: whoever connects can hand this VMM a VM.
func listenMigration(s string) (net.Listener, error) {
	network, addr, err := MigrationAddr(s)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		if network == "unix" {
			if _, serr := os.Lstat(addr); serr == nil {
				return nil, fmt.Errorf("%w (remove %s if no VMM listens there)", err, addr)
			}
		}
		return nil, err
	}
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			l.Close()
			return nil, fmt.Errorf("restrict %s to this user: %w", addr, err)
		}
	}
	return l, nil
}

// receiveMigration waits for one live migration on l. With tlsCfg the
// source must authenticate: a connection that fails the TLS handshake is
// refused and the wait goes on, so that a stranger cannot end it.
func receiveMigration(l net.Listener, cfg vm.Config, tlsCfg *tls.Config, log io.Writer) (*vm.Machine, error) {
	defer l.Close()
	fmt.Fprintf(log, "govisor: waiting for a migration on %s\n", l.Addr())
	for {
		conn, err := l.Accept()
		if err != nil {
			return nil, err
		}
		if tlsCfg != nil {
			tc := tls.Server(conn, tlsCfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				fmt.Fprintf(log, "govisor: refused a migration connection from %s: TLS handshake: %v\n", conn.RemoteAddr(), err)
				conn.Close()
				continue
			}
			conn = tc
		}
		// Incoming owns conn now: the migration closes it when it is over
		// (after the handover, or after post-copy).
		return vm.Incoming(context.Background(), conn, cfg)
	}
}

// incomingTLS builds the incoming listener's TLS configuration, or nil
// without TLS (Validate has checked that its parts go together).
func incomingTLS(c vmmconfig.Config) (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	return migration.ServerTLSConfig(c.TLS.Cert, c.TLS.Key, c.TLS.CA)
}
