package servecmd

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/cli/cmdutil"
)

func TestEtcdMemberFlags(t *testing.T) {
	const ic = "--etcd-initial-cluster=h1=http://169.254.77.11:2380,h2=http://169.254.77.12:2380,h3=http://169.254.77.13:2380"
	const eps = "--etcd-endpoints=http://169.254.77.11:2379,http://169.254.77.12:2379,http://169.254.77.13:2379"
	host, _ := os.Hostname()
	cases := []struct {
		name string
		args []string
		err  string // "" = valid
		// when valid: the member (nil: none) and the endpoints
		member, peer, client string
		endpoints            int
	}{
		{"single-member default", nil, "", "", "", "", 0},
		{"external", []string{"--etcd-endpoints", "http://10.0.0.1:2379, http://10.0.0.2:2379,"}, "", "", "", "", 2},
		{"member by host name", []string{"--host-name", "h2", ic, eps}, "", "h2", "http://169.254.77.12:2380", "http://169.254.77.12:2379", 3},
		{"member explicit", []string{"--etcd-name", "h3", "--etcd-peer-url", "http://169.254.77.13:2380", "--etcd-client-url", "http://169.254.77.13:2379", ic, eps}, "", "h3", "http://169.254.77.13:2380", "http://169.254.77.13:2379", 3},
		{"system host name", []string{"--etcd-initial-cluster", host + "=http://127.0.0.1:2380", "--etcd-endpoints", "http://127.0.0.1:2379"}, "", host, "http://127.0.0.1:2380", "http://127.0.0.1:2379", 1},
		{"name without cluster", []string{"--etcd-name", "h1"}, "--etcd-name: only used with --etcd-initial-cluster", "", "", "", 0},
		{"election timeout without cluster", []string{"--etcd-election-timeout", "2s"}, "--etcd-election-timeout: only used with --etcd-initial-cluster", "", "", "", 0},
		{"client URL without cluster", []string{"--etcd-client-url", "http://1.2.3.4:2379", eps}, "--etcd-client-url: only used with --etcd-initial-cluster", "", "", "", 0},
		{"not a member", []string{"--host-name", "h4", ic, eps}, `--etcd-name: "h4" is not a member in --etcd-initial-cluster (h1, h2, h3)`, "", "", "", 0},
		{"no peer URL", []string{"--etcd-name", "h1", "--etcd-initial-cluster", "h1=http://169.254.77.11:2380,x", eps}, `--etcd-initial-cluster: member "x" has no peer URL: write NAME=http://IP:PORT`, "", "", "", 0},
		{"no endpoints", []string{"--etcd-name", "h1", ic}, "--etcd-endpoints: empty", "", "", "", 0},
		{"missing endpoint", []string{"--etcd-name", "h1", ic, "--etcd-endpoints", "http://169.254.77.11:2379,http://169.254.77.12:2379"}, "--etcd-endpoints: lists 2 client URLs for the 3 members", "", "", "", 0},
		{"peer URL mismatch", []string{"--etcd-name", "h1", "--etcd-peer-url", "http://169.254.77.11:2390", ic, eps}, "--etcd-peer-url: http://169.254.77.11:2390 differs", "", "", "", 0},
		{"negative timeout", []string{"--etcd-timeout", "-1s"}, "--etcd-timeout -1s", "", "", "", 0},
		{"host lease TTL", []string{"--host-lease-ttl", "15s"}, "", "", "", "", 0},
		{"labels", []string{"--label", "zone=a", "--label", "rack=r1"}, "", "", "", "", 0},
		{"label without value", []string{"--label", "zone"}, `--label "zone": write KEY=VALUE`, "", "", "", 0},
		{"label with a space", []string{"--label", "zone=a b"}, `--label "zone=a b": write KEY=VALUE`, "", "", "", 0},
		{"host lease TTL too short", []string{"--host-lease-ttl", "1s"}, "--host-lease-ttl 1s: give whole seconds, at least 2s", "", "", "", 0},
		{"host lease TTL fraction", []string{"--host-lease-ttl", "2500ms"}, "--host-lease-ttl 2.5s", "", "", "", 0},
		{"etcd cert without CA and key", []string{"--etcd-cert", "/nonexistent/cert.pem"}, "--etcd-ca: etcd TLS needs all of --etcd-ca, --etcd-cert and --etcd-key", "", "", "", 0},
		{"etcd TLS files missing", []string{"--etcd-ca", "/nonexistent/ca.pem", "--etcd-cert", "/nonexistent/cert.pem", "--etcd-key", "/nonexistent/key.pem"}, "--etcd-ca: open /nonexistent/ca.pem", "", "", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := &serveOptions{}
			if err := newServeCmd(o).Flags().Parse(c.args); err != nil {
				t.Fatal(err)
			}
			err := o.check()
			if c.err != "" {
				var ee *cmdutil.ExitError
				if !errors.As(err, &ee) || ee.Code != 2 || !strings.HasPrefix(ee.Err.Error(), c.err) {
					t.Fatalf("error %v, want one starting %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(o.cfg.EtcdEndpoints) != c.endpoints {
				t.Fatalf("endpoints %q, want %d", o.cfg.EtcdEndpoints, c.endpoints)
			}
			m := o.cfg.EtcdMember
			switch {
			case c.member == "" && m != nil:
				t.Fatalf("member mode %+v, want none", m)
			case c.member != "" && (m == nil || m.Name != c.member || m.PeerURL != c.peer || m.ClientURL != c.client):
				t.Fatalf("member %+v, want %s at %s and %s", m, c.member, c.peer, c.client)
			}
			if o.cfg.EtcdTimeout != 0 && c.name != "negative timeout" {
				t.Fatalf("timeout %v: the store picks the default", o.cfg.EtcdTimeout)
			}
		})
	}
}
