package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// unixPrefix marks a migration address that is a Unix socket path: both
// VMMs run on this host, and open vsock connections move with the VM.
const unixPrefix = "unix:"

// MigrationAddr splits a migration address, HOST:PORT or unix:PATH, into a
// network for net.Listen or net.Dial and its address.
func MigrationAddr(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, unixPrefix); ok {
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
