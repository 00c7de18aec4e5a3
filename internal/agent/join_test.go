package agent

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/cluster/store"
)

// slowElection is the etcd election timeout of the members these tests
// start: they may run in a TCG lab host, too slow for etcd's default.
const slowElection = 2 * time.Second

// loopbackURL is http://127.0.0.1:PORT on a port free at the time.
func loopbackURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// TestJoinThroughAgent: the first host's agent runs a one-member etcd on
// addresses others reach; a second host joins through its HTTPS API (as
// govisor serve --join does), its etcd becomes a member, and both agents
// see both hosts. An agent on the single-host default etcd refuses a join,
// saying how to start it instead.
func TestJoinThroughAgent(t *testing.T) {
	dir := t.TempDir()
	cr := writeCreds(t, dir, "join-token\n")
	tcp := func(c *Config) {
		cr.serve(c)
		c.Socket, c.PeerCA = "", cr.cert
	}

	p1, c1, p2, c2 := loopbackURL(t), loopbackURL(t), loopbackURL(t), loopbackURL(t)
	a1 := startAgent(t, filepath.Join(dir, "h1"), func(c *Config) {
		tcp(c)
		c.HostName, c.EtcdEndpoints = "h1", []string{c1}
		c.EtcdMember = &store.Member{Name: "h1", ClientURL: c1, InitialCluster: "h1=" + p1, ElectionTimeout: slowElection}
	})
	defer a1.Close()
	ctx := context.Background()
	url := tcpURL(t, a1)
	info, err := Join(ctx, Config{PeerCA: cr.cert, TokenFile: cr.tokens}, url, api.JoinRequest{Name: "h2", PeerURL: p2})
	if err != nil || !info.Member || !strings.Contains(info.InitialCluster, "h1="+p1) || !strings.Contains(info.InitialCluster, "h2="+p2) {
		t.Fatalf("Join = %+v, %v", info, err)
	}
	if _, err := Join(ctx, Config{PeerCA: cr.cert}, url, api.JoinRequest{Name: "h2", PeerURL: p2}); err == nil {
		t.Error("a join without a token was let in")
	}
	a2 := startAgent(t, filepath.Join(dir, "h2"), func(c *Config) {
		tcp(c)
		c.HostName, c.EtcdEndpoints = "h2", append(info.Endpoints, c2)
		c.EtcdMember = &store.Member{Name: "h2", ClientURL: c2, InitialCluster: info.InitialCluster, Join: true, ElectionTimeout: slowElection}
	})
	defer a2.Close()
	for _, ta := range []testAgent{a1, a2} {
		var names []string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			hl, err := ta.Hosts(ctx)
			names = names[:0]
			for _, h := range hl.Items {
				names = append(names, h.Name)
			}
			slices.Sort(names)
			if err == nil && slices.Equal(names, []string{"h1", "h2"}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lists hosts %v (%v), want h1 and h2", ta.cfg.HostName, names, err)
			}
		}
	}

	evs, err := a2.ClusterEvents(ctx, 0)
	if err != nil || !slices.ContainsFunc(evs, func(e api.ClusterEvent) bool {
		return e.Kind == api.EventHostJoined && e.Host == "h2" && e.By == "h1" && strings.Contains(e.Reason, "etcd member")
	}) {
		t.Errorf("no host-joined event for h2: %+v, %v", evs, err)
	}

	lone := startAgent(t, filepath.Join(dir, "lone"), nil)
	defer lone.Close()
	if _, err := lone.hosts.AddMember(ctx, api.JoinRequest{Name: "h3", PeerURL: loopbackURL(t)}); err == nil || !strings.Contains(err.Error(), "--etcd-initial-cluster") {
		t.Errorf("a join to a single-host default etcd: %v", err)
	}
}
