package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/govisor/govisor/api"
)

// testPKI writes a CA and a certificate for 127.0.0.1 (server and client
// use, as a host's etcd certificate) into dir and returns the files.
func testPKI(t *testing.T, dir, name string) *TLS {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &TLS{CA: filepath.Join(dir, name+"-ca.pem"), Cert: filepath.Join(dir, name+"-cert.pem"), Key: filepath.Join(dir, name+"-key.pem")}
	for path, b := range map[string][]byte{
		f.CA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		f.Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		f.Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func httpsURL(t *testing.T) string { return strings.Replace(freeURL(t), "http://", "https://", 1) }

// refused checks that a client configured by tc cannot read through eps.
func refused(t *testing.T, what string, eps []string, tc *tls.Config) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 3 * time.Second, TLS: tc, Logger: zap.NewNop()})
	if err != nil {
		return // refused at dial
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "/govisor/", clientv3.WithCountOnly()); err == nil {
		t.Errorf("%s: read the store", what)
	}
}

// TestTLSThreeMembers runs a three-member etcd over TLS with client
// certificates: the members and their stores talk, and clients without a
// certificate, with one from another CA, or without TLS are refused.
func TestTLSThreeMembers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pki := testPKI(t, dir, "lab")
	const n = 3
	cfgs := make([]Config, n)
	var initial, eps []string
	for i := range n {
		peer, client := httpsURL(t), httpsURL(t)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peer))
		eps = append(eps, client)
		cfgs[i] = Config{DataDir: t.TempDir(), Timeout: time.Minute, TLS: pki, Member: &Member{Name: fmt.Sprintf("m%d", i), ClientURL: client}}
	}
	for i := range cfgs {
		cfgs[i].Member.InitialCluster = strings.Join(initial, ",")
		cfgs[i].Endpoints = eps
	}
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(ctx, cfgs[i]) })
	}
	wg.Wait()
	defer func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	if err := stores[0].CreateVM(ctx, Desired{Spec: api.VMSpec{Name: "a", Kernel: "/k"}, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if r, err := stores[i].GetVM(ctx, "a"); err != nil || r.Desired.Host != "h1" {
			t.Fatalf("read through member %d: %+v, %v", i, r, err)
		}
	}
	// An external client of the cluster, with the same files.
	ext, err := Open(ctx, Config{Endpoints: eps, TLS: pki, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("external client with a certificate: %v", err)
	}
	if r, err := ext.GetVM(ctx, "a"); err != nil || r.Desired.Host != "h1" {
		t.Errorf("read as an external client: %+v, %v", r, err)
	}
	ext.Close()

	// Trusting the CA is not enough: the members want a certificate.
	caOnly := (&TLS{CA: pki.CA}).info()
	caOnly.ClientCertAuth = false
	tc, err := caOnly.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	refused(t, "a client without a certificate", eps, tc)
	// Nor is a certificate another CA signed.
	other := testPKI(t, dir, "other")
	otc, err := (&TLS{CA: pki.CA, Cert: other.Cert, Key: other.Key}).clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	refused(t, "a client with another CA's certificate", eps, otc)
	plain := make([]string, n)
	for i, e := range eps {
		plain[i] = strings.Replace(e, "https://", "http://", 1)
	}
	refused(t, "a client without TLS", plain, nil)
	// The peer port wants a certificate too.
	peerURL := strings.TrimPrefix(strings.Split(initial[0], "=")[1], "https://")
	conn, err := tls.Dial("tcp", peerURL, tc)
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = conn.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Error("the peer port answered a client without a certificate")
	}
}

// TestTLSEmbeddedAndSchemes: the single embedded member over TLS, and
// URLs whose scheme does not fit the TLS setting are refused by flag.
func TestTLSEmbeddedAndSchemes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pki := testPKI(t, dir, "one")
	s, err := Open(ctx, Config{DataDir: filepath.Join(dir, "state"), TLS: pki})
	if err != nil {
		t.Fatal(err)
	}
	if eps := s.Endpoints(); len(eps) != 1 || !strings.HasPrefix(eps[0], "https://127.0.0.1:") {
		t.Errorf("endpoints %v", eps)
	}
	if err := s.CreateVM(ctx, Desired{Spec: api.VMSpec{Name: "a", Kernel: "/k"}, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	refused(t, "a client without TLS", []string{strings.Replace(s.Endpoints()[0], "https://", "http://", 1)}, nil)
	s.Close()

	for _, c := range []struct {
		name string
		cfg  Config
		flag string
	}{
		{"http endpoint with TLS", Config{Endpoints: []string{"http://127.0.0.1:1"}, TLS: pki}, flagEndpoints},
		{"https endpoint without TLS", Config{Endpoints: []string{"https://127.0.0.1:1"}}, flagEndpoints},
		{"http peer with TLS", Config{DataDir: t.TempDir(), Endpoints: []string{"https://127.0.0.1:1"}, TLS: pki,
			Member: &Member{Name: "a", InitialCluster: "a=http://127.0.0.1:2"}}, flagInitial},
		{"missing key", Config{Endpoints: []string{"https://127.0.0.1:1"}, TLS: &TLS{CA: pki.CA, Cert: pki.Cert}}, flagCA},
		{"key of another certificate", Config{Endpoints: []string{"https://127.0.0.1:1"}, TLS: &TLS{CA: pki.CA, Cert: pki.Cert, Key: testPKI(t, dir, "x").Key}}, flagCert},
		{"CA not PEM", Config{Endpoints: []string{"https://127.0.0.1:1"}, TLS: &TLS{CA: pki.Key, Cert: pki.Cert, Key: pki.Key}}, flagCA},
	} {
		_, err := Open(ctx, c.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Flag != c.flag {
			t.Errorf("%s: %v, want an error of --%s", c.name, err, c.flag)
		}
	}
}
