package agent

import (
	"context"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

// TestLeaderMetrics: a lone agent leads its one-host cluster, and its
// metrics say so: leader 1, one ready host (zeros for the other states),
// and the load balancer's imbalance.
func TestLeaderMetrics(t *testing.T) {
	ta := startAgent(t, filepath.Join(t.TempDir(), "a"), nil)
	defer ta.Close()
	want := []string{
		"govisor_cluster_leader 1",
		`govisor_cluster_hosts{state="ready"} 1`,
		`govisor_cluster_hosts{state="unreachable"} 0`,
		`govisor_cluster_hosts{state="maintenance"} 0`,
		"govisor_cluster_imbalance 0",
	}
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rec := httptest.NewRecorder()
		ta.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		body = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, body)
		}
	}
}

// TestClusterEventStream: maintenance asked for the lone host is a cluster
// event in the event stream and in the kept list, and the leader then
// reports the host's state change (ready to maintenance) with its reason.
func TestClusterEventStream(t *testing.T) {
	ta := startAgent(t, filepath.Join(t.TempDir(), "a"), nil)
	defer ta.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The leader's first look at the hosts, before the change.
	time.Sleep(time.Second)
	stream := ta.hosts.Events(ctx, 0)
	if _, err := ta.hosts.SetMaintenance(ctx, "testhost", true); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for len(kinds) < 2 {
		select {
		case e := <-stream:
			if e.Cluster == nil {
				continue
			}
			if e.Type != "cluster" || e.Revision == 0 || e.Cluster.Host != "testhost" || e.Cluster.By != "testhost" || e.Cluster.Reason == "" {
				t.Fatalf("cluster event %+v %+v", e, e.Cluster)
			}
			kinds = append(kinds, e.Cluster.Kind)
			t.Logf("%s: %s", e.Cluster.Kind, e.Cluster.Reason)
		case <-ctx.Done():
			t.Fatalf("cluster events seen: %v; want maintenance, then host-state", kinds)
		}
	}
	if kinds[0] != api.EventMaintenance || kinds[1] != api.EventHostState {
		t.Errorf("cluster events %v; want maintenance, then host-state", kinds)
	}
	evs, err := ta.cli.ClusterEvents(ctx, 0)
	if err != nil || len(evs) < 2 || evs[len(evs)-1].Kind != api.EventHostState || !strings.Contains(evs[len(evs)-1].Reason, "to maintenance") {
		t.Fatalf("GET /v1/cluster/events: %+v, %v", evs, err)
	}
}
