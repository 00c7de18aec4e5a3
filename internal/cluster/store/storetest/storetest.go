// Package storetest starts real multi-member etcd clusters (etcd's embed
// package, in-process, loopback only) for tests of the store and the agent
// against a cluster that loses members.
package storetest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	Members   []*embed.Etcd // nil once killed
	Endpoints []string      // client URLs, one per member
}

// StartCluster starts an n-member etcd cluster with its data under
// t.TempDir() and stops it when the test ends. Elections are fast (100 ms)
// so that losing the leader costs the test little time.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	type urls struct{ client, peer url.URL }
	us := make([]urls, n)
	var initial []string
	for i := range us {
		us[i] = urls{loopbackURL(t), loopbackURL(t)}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, us[i].peer.String()))
	}
	c := &Cluster{}
	ready := make([]<-chan struct{}, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.LogLevel = "error"
		cfg.TickMs, cfg.ElectionMs = 10, 100
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{us[i].client}, []url.URL{us[i].client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{us[i].peer}, []url.URL{us[i].peer}
		cfg.ListenMetricsUrls = nil
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "govisor-test"
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			t.Fatalf("start etcd member %d: %v", i, err)
		}
		c.Members = append(c.Members, e)
		c.Endpoints = append(c.Endpoints, us[i].client.String())
		ready[i] = e.Server.ReadyNotify()
	}
	t.Cleanup(c.Close)
	for i, r := range ready {
		select {
		case <-r:
		case <-time.After(30 * time.Second):
			t.Fatalf("etcd member %d not ready", i)
		}
	}
	return c
}

// Kill stops member i abruptly (as far as an in-process member allows).
func (c *Cluster) Kill(i int) {
	if e := c.Members[i]; e != nil {
		c.Members[i] = nil
		e.Server.HardStop()
		e.Close()
	}
}

// Leader is the index of the current leader, or -1.
func (c *Cluster) Leader() int {
	for i, e := range c.Members {
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			return i
		}
	}
	return -1
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Kill(i)
	}
}

func loopbackURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}
