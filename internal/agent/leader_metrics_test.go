package agent

import (
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
