package migration

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/govisor/govisor/internal/testpki"
)

func TestTLSMutualAuth(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, dir, "ca")
	srvCert, srvKey := ca.Issue(t, dir, "destination")
	cliCert, cliKey := ca.Issue(t, dir, "source")
	caFile := filepath.Join(dir, "ca.pem")
	rogue := testpki.NewCA(t, dir, "rogue-ca")
	rogueCert, rogueKey := rogue.Issue(t, dir, "intruder")

	serverCfg, err := ServerTLSConfig(srvCert, srvKey, caFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := ClientTLSConfig(cliCert, cliKey, caFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	rogueCfg, err := ClientTLSConfig(rogueCert, rogueKey, caFile, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	noCertCfg := clientCfg.Clone()
	noCertCfg.Certificates = nil

	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"mutual auth", clientCfg, true},
		{"client without a certificate", noCertCfg, false},
		{"client certificate from another CA", rogueCfg, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			d := newFakeDest(testRegions)
			rc := make(chan error, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					rc <- err
					return
				}
				defer c.Close()
				_, err = Receive(context.Background(), c, memOnlyDest{d})
				rc <- err
			}()
			conn, err := tls.Dial("tcp", l.Addr().String(), tt.client)
			if err != nil {
				if tt.ok {
					t.Fatal(err)
				}
				if rerr := <-rc; rerr == nil {
					t.Fatal("destination accepted a migration without client authentication")
				}
				return
			}
			defer conn.Close()
			v := newFakeVM(4, testRegions)
			stats, err := Send(context.Background(), conn, v, Options{MaxRounds: 2})
			if err != nil {
				conn.Close()
			}
			rerr := <-rc
			if tt.ok {
				if err != nil || rerr != nil {
					t.Fatalf("Send: %v; Receive: %v", err, rerr)
				}
				sameMemory(t, v, d)
				return
			}
			if err == nil || rerr == nil {
				t.Fatalf("unauthenticated client: Send %v, Receive %v", err, rerr)
			}
			t.Logf("refused: send %v; receive %v", err, rerr)
			checkSourceRuns(t, v, stats)
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, dir, "ca")
	cert, key := ca.Issue(t, dir, "x")
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("no pem here"), 0o600)
	if _, err := ServerTLSConfig(cert, key, empty); err == nil {
		t.Fatal("empty CA bundle accepted")
	}
	if _, err := ClientTLSConfig(cert, filepath.Join(dir, "missing.key"), filepath.Join(dir, "ca.pem"), "h"); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := ServerTLSConfig(cert, key, filepath.Join(dir, "missing.pem")); err == nil {
		t.Fatal("missing CA accepted")
	}
}
