package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmmapi"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

var serial int64

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a certificate for 127.0.0.1 usable by servers and clients
// and returns the certificate and key files.
func (ca *testCA) issue(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateTLS migrates over mutual TLS between two `govisor run`
// processes: a source that does not trust the destination's CA refuses it,
// a destination that does not trust the source's certificate refuses it
// (and keeps waiting), and with the right certificates the VM moves.
func TestMigrateTLS(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	good, other := newTestCA(t, dir, "good-ca"), newTestCA(t, dir, "other-ca")
	dstCert, dstKey := good.issue(t, dir, "dst")
	srcCert, srcKey := good.issue(t, dir, "src")
	strangerCert, strangerKey := other.issue(t, dir, "stranger")

	elf := filepath.Join(dir, "dirty.elf")
	if err := os.WriteFile(elf, kvmtest.PVHELF(dirtyGuest(), 0x100000), 0o644); err != nil {
		t.Fatal(err)
	}
	src := startVMM(t, filepath.Join(dir, "src.sock"), "--kernel", elf, "--boot", "pvh", "--memory", "64M")
	src.waitAPI(t)
	addr := freeAddr(t)
	dst := startVMM(t, filepath.Join(dir, "dst.sock"), "--incoming", addr, "--memory", "64M",
		"--tls-cert", dstCert, "--tls-key", dstKey, "--tls-ca", good.file)
	dst.waitAPI(t)

	refused := []struct {
		name            string
		cert, key, ca   string
		wantErr, dstLog string
	}{
		{"source does not trust the destination", srcCert, srcKey, other.file, "certificate signed by unknown authority", ""},
		{"destination does not trust the source", strangerCert, strangerKey, good.file, "tls", "refused a migration connection"},
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
		"--tls-cert", srcCert, "--tls-key", srcKey, "--tls-ca", good.file)
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
