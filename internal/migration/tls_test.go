package migration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki writes a CA and certificates signed by it into dir.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return &pki{dir: dir, caCert: cert, caKey: key, serial: 1}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes name.crt and name.key, a leaf for 127.0.0.1 usable by
// clients and servers; it returns their paths.
func (p *pki) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func TestTLSMutualAuth(t *testing.T) {
	dir := t.TempDir()
	ca := newPKI(t, dir, "ca")
	srvCert, srvKey := ca.issue(t, "destination")
	cliCert, cliKey := ca.issue(t, "source")
	caFile := filepath.Join(dir, "ca.pem")
	rogue := newPKI(t, dir, "rogue-ca")
	rogueCert, rogueKey := rogue.issue(t, "intruder")

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
	ca := newPKI(t, dir, "ca")
	cert, key := ca.issue(t, "x")
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
