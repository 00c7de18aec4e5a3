package store

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"go.etcd.io/etcd/client/pkg/v3/transport"
)

// TLS makes etcd traffic TLS with client certificates, both ways: the
// embedded member serves clients and its peers only over TLS and only to
// holders of a certificate CA signed (etcd's --client-cert-auth and
// --peer-client-cert-auth), and the store's client presents Cert to the
// members (embedded or external). One certificate per host serves all three
// roles, so it needs both the server and the client extended key usage and
// the IP addresses of the host's etcd URLs (127.0.0.1 for the embedded
// single member) as subject alternative names.
type TLS struct {
	CA   string // PEM file of the CA certificate that signs every member's and client's
	Cert string // PEM file of this host's certificate
	Key  string // PEM file of its private key
}

// Flag names of the TLS files, for error messages.
const (
	flagCA   = "etcd-ca"
	flagCert = "etcd-cert"
	flagKey  = "etcd-key"
)

// info is the files as etcd takes them, with client certificates required.
func (t *TLS) info() transport.TLSInfo {
	return transport.TLSInfo{CertFile: t.Cert, KeyFile: t.Key, TrustedCAFile: t.CA, ClientCertAuth: true}
}

// Check loads the files, so that a missing or wrong one is reported by
// its flag before etcd starts.
func (t *TLS) Check() error {
	if t.CA == "" || t.Cert == "" || t.Key == "" {
		return cfgErr(flagCA, "etcd TLS needs all of --%s, --%s and --%s", flagCA, flagCert, flagKey)
	}
	b, err := os.ReadFile(t.CA)
	if err != nil {
		return cfgErr(flagCA, "%v", err)
	}
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "CERTIFICATE" {
		return cfgErr(flagCA, "%s holds no PEM certificate", t.CA)
	} else if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return cfgErr(flagCA, "%s: %v", t.CA, err)
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		return cfgErr(flagCert, "--%s %s with --%s %s: %v", flagCert, t.Cert, flagKey, t.Key, err)
	}
	return nil
}

// clientConfig is the client side: trust CA, present Cert.
func (t *TLS) clientConfig() (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c, err := t.info().ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("store: etcd client TLS: %w", err)
	}
	return c, nil
}

// scheme is the URL scheme of etcd URLs with t: https with TLS.
func (t *TLS) scheme() string {
	if t == nil {
		return "http"
	}
	return "https"
}

// checkSchemes says which flag lists a URL whose scheme does not fit t:
// https:// for every URL with TLS, http:// without.
func (t *TLS) checkSchemes(flag string, urls ...string) error {
	want := t.scheme()
	for _, u := range urls {
		p, problem := parseURL(u)
		if problem != "" || p.Scheme == want {
			continue // parseURL's problems are reported where the URL is checked
		}
		if t == nil {
			return cfgErr(flag, "%s is https://: give --%s, --%s and --%s for etcd TLS, or use http://", u, flagCA, flagCert, flagKey)
		}
		return cfgErr(flag, "%s is http://: with --%s, every etcd URL is https://", u, flagCert)
	}
	return nil
}

// checkSchemes checks that m's URLs (Check filled them in) fit t.
func (m Member) checkSchemes(t *TLS) error {
	peers, err := parseInitialCluster(m.InitialCluster)
	if err != nil {
		return err
	}
	urls := make([]string, len(peers))
	for i, p := range peers {
		urls[i] = p.url.String()
	}
	if err := t.checkSchemes(flagInitial, urls...); err != nil {
		return err
	}
	return t.checkSchemes(flagClient, m.ClientURL)
}
