package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMigrationAddr(t *testing.T) {
	tests := []struct {
		in            string
		network, addr string
		wantErr       string
	}{
		{in: "10.0.0.2:7000", network: "tcp", addr: "10.0.0.2:7000"},
		{in: "[::1]:7000", network: "tcp", addr: "[::1]:7000"},
		{in: "unix:/run/vm1.migrate", network: "unix", addr: "/run/vm1.migrate"},
		{in: "unix:rel/vm.sock", network: "unix", addr: "rel/vm.sock"},
		{in: "unix:", wantErr: "socket path"},
		{in: "host-without-port", wantErr: "unix:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			network, addr, err := MigrationAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || network != tt.network || addr != tt.addr {
				t.Fatalf("got %q %q %v, want %q %q", network, addr, err, tt.network, tt.addr)
			}
		})
	}
}

func TestListenMigrationUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.sock")
	l, err := listenMigration("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := listenMigration("unix:" + path); err == nil || !strings.Contains(err.Error(), "remove") {
		t.Fatalf("second listener on the same path: %v, want an error saying to remove it", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close (%v)", err)
	}
}
