package webui_test

import (
	"bytes"
	"encoding/csv"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/report"
)

// checkPagesDone checks through the API what web/e2e/pages.mjs did in the
// browser: the image imported and converted, the empty volume deleted, the
// disk detached, the pool defined in the browser deleted, the cluster
// settings saved, maintenance left, and the report's CSV the same as
// `govisor report --csv` makes of the window.
func checkPagesDone(t *testing.T, a localAgent, res map[string]any) {
	t.Helper()
	ctx := t.Context()
	vols, err := a.cli.ListVolumes(ctx, "e2e-pool")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vols {
		names = append(names, v.Name)
		if v.Name == "imported.qcow2" && (v.Format != "qcow2" || v.VirtualSize != 32<<20 || v.Progress != nil) {
			t.Errorf("the imported volume: %+v, want qcow2 of 32 MiB, made", v)
		}
	}
	if strings.Join(names, ",") != "imported.qcow2" {
		t.Errorf("volumes %v, want the imported one only (empty1 deleted)", names)
	}
	if pools, err := a.cli.ListPools(ctx); err != nil || len(pools) != 1 || pools[0].Name != "e2e-pool" {
		t.Errorf("pools after e2e-pool2 was defined and deleted in the browser: %+v, %v", pools, err)
	}
	if v, err := a.cli.GetVM(ctx, "zeta"); err != nil || len(v.Spec.Disks) != 0 {
		t.Errorf("zeta after attach and detach: %+v, %v", v.Spec.Disks, err)
	}
	cs, err := a.cli.Settings(ctx)
	if err != nil || cs != (api.ClusterSettings{HAAdmission: "warn", HostFailures: 1, Balance: "manual", BalanceThreshold: 0.25}) {
		t.Errorf("settings saved in the browser: %+v, %v", cs, err)
	}
	// Back to the defaults: HA admission would refuse the bulk starts of
	// many.mjs on this 2-CPU host (its vCPU overcommit bound).
	if _, err := a.cli.PutSettings(ctx, api.ClusterSettings{}); err != nil {
		t.Fatal(err)
	}
	hosts, err := a.cli.Hosts(ctx)
	if err != nil || len(hosts) != 1 || hosts[0].State != "ready" {
		t.Errorf("the host after maintenance was left: %+v, %v", hosts, err)
	}
	c, _ := res["csv"].(map[string]any)
	path, _ := c["path"].(string)
	from, err1 := time.Parse(time.RFC3339, str(c["from"]))
	to, err2 := time.Parse(time.RFC3339, str(c["to"]))
	if path == "" || err1 != nil || err2 != nil {
		t.Fatalf("the report's CSV: %v (%v, %v)", c, err1, err2)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.cli.Usage(ctx, client.UsageQuery{From: from, To: to})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := report.WriteCSV(&want, report.Rows(rep.Samples)); err != nil {
		t.Fatal(err)
	}
	// A sample taken just before the window's end may be stored just after
	// the browser asked: the last seconds are left out of the comparison.
	settled := to.Add(-2 * time.Second)
	g, w := settledRows(t, readCSV(t, got), settled), settledRows(t, readCSV(t, want.Bytes()), settled)
	if len(g) < 2 || len(g) != len(w) {
		t.Fatalf("the browser's CSV has %d lines, govisor report's %d:\n%s\n---\n%s", len(g), len(w), got, want.Bytes())
	}
	for i := range g {
		if !sameRecord(g[i], w[i]) {
			t.Errorf("CSV line %d: browser %q, govisor report %q", i, g[i], w[i])
		}
	}
	t.Logf("the report's CSV: %d lines as govisor report writes them", len(g))
}

func str(v any) string { s, _ := v.(string); return s }

// settledRows keeps the header and the rows whose time is before until.
func settledRows(t *testing.T, rows [][]string, until time.Time) [][]string {
	t.Helper()
	var out [][]string
	for i, r := range rows {
		if i == 0 {
			out = append(out, r)
			continue
		}
		at, err := time.Parse(time.RFC3339, r[0])
		if err != nil {
			t.Fatalf("CSV time %q: %v", r[0], err)
		}
		if at.Before(until) {
			out = append(out, r)
		}
	}
	return out
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	r, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("CSV %q: %v", b, err)
	}
	return r
}

// sameRecord compares CSV records, numbers within their last printed digit
// (JavaScript and Go may round a tie differently).
func sameRecord(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] == b[i] {
			continue
		}
		x, err1 := strconv.ParseFloat(a[i], 64)
		y, err2 := strconv.ParseFloat(b[i], 64)
		if err1 != nil || err2 != nil || x-y > 0.011 || y-x > 0.011 {
			return false
		}
	}
	return true
}
