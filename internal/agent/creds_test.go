package agent

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/testpki"
)

// tcpCreds are what a test's agents serve their TCP API with: a
// certificate for 127.0.0.1 signed by itself (package testpki), its key
// and a bearer token file, written into one folder.
type tcpCreds struct {
	cert, key, tokens string // the files
	certPEM           []byte
}

// writeCreds writes fresh credentials into dir (cert.pem, key.pem and
// tokens, whose text is tokens).
func writeCreds(t testing.TB, dir, tokens string) tcpCreds {
	t.Helper()
	certPEM, keyPEM := testpki.SelfSigned(t)
	cr := tcpCreds{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), tokens: filepath.Join(dir, "tokens"), certPEM: certPEM}
	for f, b := range map[string][]byte{cr.cert: certPEM, cr.key: keyPEM, cr.tokens: []byte(tokens)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cr
}

// serve has the agent of c serve its API on loopback TLS with these
// credentials too (c's socket stays as it is).
func (cr tcpCreds) serve(c *Config) {
	c.Listen, c.TLSCert, c.TLSKey, c.TokenFile = "127.0.0.1:0", cr.cert, cr.key, cr.tokens
}

// tcpURL is the https URL of ta's TCP API.
func tcpURL(t testing.TB, ta testAgent) string {
	t.Helper()
	for _, a := range ta.Addrs() {
		if s, ok := strings.CutPrefix(a, "tcp:"); ok {
			return "https://" + s
		}
	}
	t.Fatalf("the agent serves no TCP API: %v", ta.Addrs())
	return ""
}

// client is a client of ta's TCP API that trusts these credentials'
// certificate and sends the bearer token tok.
func (cr tcpCreds) client(t testing.TB, ta testAgent, tok string) *client.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cr.certPEM)
	c, err := client.New(client.Options{URL: tcpURL(t, ta), Token: tok, TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
