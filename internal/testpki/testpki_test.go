package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// TestCertificatesVerify: an issued certificate verifies against its CA
// (and not another's) for 127.0.0.1 as a server and a client; a
// self-signed one verifies against itself as a server.
func TestCertificatesVerify(t *testing.T) {
	dir := t.TempDir()
	ca, other := NewCA(t, dir, "ca"), NewCA(t, dir, "other")
	certFile, keyFile := ca.Issue(t, dir, "leaf")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := func(pemFile string) *x509.CertPool {
		b, err := os.ReadFile(pemFile)
		if err != nil {
			t.Fatal(err)
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) {
			t.Fatalf("%s holds no certificate", pemFile)
		}
		return p
	}
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots(ca.File), DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("issued certificate, usage %v: %v", use, err)
		}
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots(other.File), DNSName: "127.0.0.1"}); err == nil {
		t.Error("the certificate verifies against another CA")
	}
	sc, sk := WriteSelfSigned(t, dir)
	self, err := tls.LoadX509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := self.Leaf.Verify(x509.VerifyOptions{Roots: roots(sc), DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
}
