package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestListenPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.sock")
	for i := 0; i < 2; i++ { // the second replaces the first's stale socket
		l, err := ListenPrivate(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket %v, err %v: want a socket with mode 0600", fi.Mode(), err)
		}
		if l.Addr().String() != path {
			t.Errorf("Addr %s, want %s", l.Addr(), path)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if i == 1 {
			l.Close()
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("socket left after Close: %v", err)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := ListenPrivate(path); err == nil {
		t.Error("a regular file was replaced by a socket")
	}
}
