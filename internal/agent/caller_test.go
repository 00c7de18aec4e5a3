package agent

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
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/apitoken"
)

// hostCert makes a self-signed certificate for 127.0.0.1 that serves and
// authenticates clients, as a cluster host's (its own CA, for the test).
func hostCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "govisor host"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestPeerCallsCarryTheCaller: an agent calling another agent for a user
// (here: itself, on TCP only, as it calls the agent a VM moved to) passes
// the user along: the other agent checks the user's role and audits the
// user, not the agents' token. A token that is no agent's cannot claim to
// call for someone else.
func TestPeerCallsCarryTheCaller(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	certPEM, keyPEM := hostCert(t)
	certFile, keyFile, tokFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "tokens")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	os.WriteFile(tokFile, []byte("peer-secret\nro-secret role=viewer name=alice\nop-secret role=operator name=bob\n"), 0o600)
	ta := startAgent(t, filepath.Join(dir, "state"), func(c *Config) {
		c.Socket, c.Listen, c.TLSCert, c.TLSKey, c.TokenFile, c.PeerCA = "", "127.0.0.1:0", certFile, keyFile, tokFile, certFile
	})
	defer ta.Close()
	var addr string
	for _, a := range ta.Addrs() {
		addr, _ = strings.CutPrefix(a, "tcp:")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	clientOf := func(tok string, withCert bool, header http.Header) *client.Client {
		tc := &tls.Config{RootCAs: pool}
		if withCert {
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c, err := client.New(client.Options{URL: "https://" + addr, Token: tok, TLSConfig: tc, Header: header})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := clientOf("peer-secret", false, nil)
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	if _, err := admin.CreateVM(ctx, spec("web", kernel, ""), false); err != nil {
		t.Fatal(err)
	}

	// The agent's own peer client, for alice (a viewer) and bob (an operator).
	asAlice := apitoken.WithIdentity(ctx, apitoken.Identity{Name: "alice", Role: apitoken.Viewer})
	asBob := apitoken.WithIdentity(ctx, apitoken.Identity{Name: "bob", Role: apitoken.Operator})
	pa, err := ta.peer(asAlice, "testhost")
	if err != nil {
		t.Fatal(err)
	}
	if vms, err := pa.ListVMs(asAlice); err != nil || len(vms) != 1 {
		t.Fatalf("alice lists through the peer: %v %v", vms, err)
	}
	if _, err := pa.Action(asAlice, "web", "stop", 0); !errors.Is(err, client.ErrForbidden) || !strings.Contains(err.Error(), "alice has the viewer role") {
		t.Fatalf("alice stops a VM through the peer: %v, want 403 naming alice", err)
	}
	pb, err := ta.peer(asBob, "testhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Action(asBob, "web", "stop", 0); err != nil {
		t.Fatalf("bob stops a VM through the peer: %v", err)
	}
	// Without a user (the agent's own work) it is the agents' token.
	pn, err := ta.peer(ctx, "testhost")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pn.Action(ctx, "web", "stop", 0); err != nil {
		t.Fatalf("the agent's own call: %v", err)
	}

	// Claims that no agent makes: an admin token without the certificate,
	// a viewer's token with it, a malformed header.
	for _, c := range []struct {
		what   string
		cli    *client.Client
		status int
	}{
		{"admin token without the certificate", clientOf("peer-secret", false, http.Header{CallerHeader: {"viewer mallory"}}), http.StatusForbidden},
		{"viewer token with the certificate", clientOf("ro-secret", true, http.Header{CallerHeader: {"admin alice"}}), http.StatusForbidden},
		{"malformed header", clientOf("peer-secret", true, http.Header{CallerHeader: {"root"}}), http.StatusBadRequest},
	} {
		_, err := c.cli.Action(ctx, "web", "stop", 0)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.StatusCode != c.status {
			t.Errorf("%s: %v, want %d", c.what, err, c.status)
		}
	}

	log, err := admin.Audit(ctx, client.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range log.Items {
		got = append(got, r.Who+" "+r.Role+" "+r.Method+" "+r.Path)
	}
	peerName := apitoken.DefaultName("peer-secret")
	want := []string{
		peerName + " admin POST /v1/vms",
		"alice viewer POST /v1/vms/web/stop",
		"bob operator POST /v1/vms/web/stop",
		peerName + " admin POST /v1/vms/web/stop",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
