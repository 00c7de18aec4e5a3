// Package unixsock creates Unix sockets that only their owner can use.
package unixsock

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Listener is a Unix socket listener at its final path; Close removes the
// socket file.
type Listener struct {
	*net.UnixListener
	addr *net.UnixAddr
}

// Addr is the socket's path.
func (l *Listener) Addr() net.Addr { return l.addr }

// Close stops listening and removes the socket file.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.addr.Name)
	return err
}

// ListenPrivate creates a Unix socket at path with mode 0600, replacing a
// stale socket there. The socket is made under a temporary name, restricted,
// then renamed into place: a client can never find it with a wider mode.
func ListenPrivate(path string) (*Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("%s exists and is not a socket: remove it or choose another path", path)
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false) // the file moves; Close removes it by its final name
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &Listener{UnixListener: ul, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}
