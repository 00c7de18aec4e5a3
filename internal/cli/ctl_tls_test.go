package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/testpki"
	"github.com/govisor/govisor/internal/vmmapi"
)

// TestMigrateTLS migrates over mutual TLS between two `govisor run`
// processes: a source that does not trust the destination's CA refuses it,
// a destination that does not trust the source's certificate refuses it
// (and keeps waiting), and with the right certificates the VM moves.
func TestMigrateTLS(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	good, other := testpki.NewCA(t, dir, "good-ca"), testpki.NewCA(t, dir, "other-ca")
	dstCert, dstKey := good.Issue(t, dir, "dst")
	srcCert, srcKey := good.Issue(t, dir, "src")
	strangerCert, strangerKey := other.Issue(t, dir, "stranger")

	elf := filepath.Join(dir, "dirty.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(dirtyGuest(), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	src := startVMM(t, filepath.Join(dir, "src.sock"), "--kernel", elf, "--boot", "pvh", "--memory", "64M")
	src.waitAPI(t)
	addr := freeAddr(t)
	dst := startVMM(t, filepath.Join(dir, "dst.sock"), "--incoming", addr, "--memory", "64M",
		"--tls-cert", dstCert, "--tls-key", dstKey, "--tls-ca", good.File)
	dst.waitAPI(t)

	refused := []struct {
		name            string
		cert, key, ca   string
		wantErr, dstLog string
	}{
		{"source does not trust the destination", srcCert, srcKey, other.File, "certificate signed by unknown authority", ""},
		{"destination does not trust the source", strangerCert, strangerKey, good.File, "tls", "refused a migration connection"},
	}
	for _, tt := range refused {
		_, errOut, err := runCtl(t, src.sock, "migrate", addr, "--quiet", "--tls-cert", tt.cert, "--tls-key", tt.key, "--tls-ca", tt.ca)
		if err == nil || !strings.Contains(errOut, tt.wantErr) || !strings.Contains(errOut, "--tls-ca") {
			t.Fatalf("%s: migrate: %v\nstderr: %s", tt.name, err, errOut)
		}
		t.Logf("%s: %s", tt.name, strings.TrimSpace(errOut))
		if p, err := vmmapi.NewClient(src.sock).MigrateProgress(t.Context()); err != nil || p.State != vmmapi.MigrateFailed {
			t.Fatalf("%s: progress %+v, %v", tt.name, p, err)
		}
		if info := src.waitAPI(t); info.State != "running" {
			t.Fatalf("%s: source %+v", tt.name, info)
		}
		if tt.dstLog != "" {
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(dst.out.String(), tt.dstLog); {
				if time.Now().After(deadline) {
					t.Fatalf("%s: destination log lacks %q:\n%s", tt.name, tt.dstLog, dst.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		select {
		case err := <-dst.done:
			dst.done <- err
			t.Fatalf("%s: the destination stopped waiting: %v\n%s", tt.name, err, dst.out.String())
		default:
		}
	}

	out, errOut, err := runCtl(t, src.sock, "migrate", addr, "--quiet", "--max-downtime", "500ms",
		"--tls-cert", srcCert, "--tls-key", srcKey, "--tls-ca", good.File)
	if err != nil {
		t.Fatalf("migrate over TLS: %v\n%s\nsource: %s\ndestination: %s", err, errOut, src.out.String(), dst.out.String())
	}
	t.Logf("TLS migration: %s", strings.Join(strings.Fields(out), " "))
	if err := src.waitExit(t, "source after migrating"); err != nil {
		t.Fatalf("source: %v\n%s", err, src.out.String())
	}
	if info := dst.waitAPI(t); info.State != "running" {
		t.Fatalf("destination: %+v", info)
	}
	runCtl(t, dst.sock, "stop")
	dst.waitExit(t, "destination after stop")
}

// TestRunTLSFlagErrors checks the --tls-* flags of govisor run.
func TestRunTLSFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--kernel", "/nonexistent", "--tls-cert", "c", "--tls-key", "k", "--tls-ca", "ca"}, "give --incoming"},
		{[]string{"--incoming", "127.0.0.1:0", "--tls-cert", "c"}, "go together"},
		{[]string{"--incoming", "127.0.0.1:0", "--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key", "--tls-ca", "/nonexistent.pem"}, "nonexistent"},
	}
	for _, tt := range tests {
		o := &runOptions{memory: "64M"}
		for i := 0; i+1 < len(tt.args); i += 2 {
			v := tt.args[i+1]
			switch tt.args[i] {
			case "--kernel":
				o.kernel = v
			case "--incoming":
				o.incoming = v
			case "--tls-cert":
				o.tlsCert = v
			case "--tls-key":
				o.tlsKey = v
			case "--tls-ca":
				o.tlsCA = v
			}
		}
		if _, _, err := o.prepare(newRunCmd().Flags()); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}
