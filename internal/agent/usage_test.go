package agent

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/node"
	"github.com/govisor/govisor/internal/report"
	"github.com/govisor/govisor/internal/usage"
	"github.com/govisor/govisor/internal/vmmapi"
)

// spinGuest prints marker and then loops forever: a VM whose vCPU stays busy.
func spinGuest(marker string) []byte {
	var a kvmtest.Asm
	a.Print(marker)
	a.SpinForever(func(*kvmtest.Asm) {}, func(a *kvmtest.Asm) { a.Pause() })
	return a.B
}

// TestUsageReport samples a running VM at a short interval and checks that
// GET /v1/usage returns its samples, from which the report derives rows
// with non-zero CPU, along with the host's own.
func TestUsageReport(t *testing.T) {
	kvmtest.Require(t)
	bin := govisorBin(t)
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.Executable = bin; c.UsageEvery = 200 * time.Millisecond })
	defer ta.Close()
	ctx := context.Background()
	start := time.Now().Add(-time.Second)

	k := writeGuest(t, dir, "spin.elf", spinGuest("SPIN\n"))
	if _, err := ta.cli.CreateVM(ctx, spec("spinner", k, api.RestartNever), true); err != nil {
		t.Fatal(err)
	}
	waitVM(t, ta.cli, "spinner", "running", func(v api.VM) bool { return v.Status.State == api.StateRunning })

	var rep api.UsageReport
	var vmRows, hostRows []report.Row
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		rep, err = ta.cli.Usage(ctx, client.UsageQuery{From: start, To: time.Now().Add(time.Second), VM: "spinner"})
		if err != nil {
			t.Fatal(err)
		}
		vmRows, hostRows = nil, nil
		busy := false
		for _, r := range report.Rows(rep.Samples) {
			switch r.VM {
			case "spinner":
				vmRows = append(vmRows, r)
				busy = busy || r.CPUPercent > 0
			case "":
				hostRows = append(hostRows, r)
			default:
				t.Fatalf("the vm filter let through %q", r.VM)
			}
		}
		// A jailed VMM's API socket comes a little after its process:
		// wait for a sample that read it too.
		withIO := false
		for _, s := range rep.Samples {
			withIO = withIO || s.VM == "spinner" && s.CPUSeconds > 0 && s.HasIO
		}
		if busy && withIO && len(vmRows) >= 3 && len(hostRows) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no busy rows for the VM after 60 s: %d VM rows, %d host rows, report %+v", len(vmRows), len(hostRows), rep)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sawIO := false
	if rep.Host != "testhost" || rep.IntervalSeconds != 0.2 {
		t.Errorf("report header %+v", rep)
	}
	for _, s := range rep.Samples {
		if s.VM != "spinner" {
			continue
		}
		if s.VCPUs != 1 || s.MemoryBytes != 64<<20 || s.Host != "testhost" {
			t.Fatalf("VM sample %+v: want 1 vCPU, 64 MiB, host testhost", s)
		}
		if s.State == string(api.StateRunning) && (s.CPUSeconds <= 0 || s.RSSBytes == 0) {
			t.Fatalf("running VM sample without process figures: %+v", s)
		}
		if s.CPUSeconds > 0 {
			sawIO = sawIO || s.HasIO
		}
	}

	if !sawIO {
		t.Error("no sample of the running VM has I/O counters: GET /stats on its VMM's API socket was not read")
	}

	// The CSV of these rows parses back with the VM's rows in it.
	var buf bytes.Buffer
	if err := report.WriteCSV(&buf, report.Rows(rep.Samples)); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs[1:] {
		if r[2] == "spinner" {
			n++
		}
	}
	if n != len(vmRows) {
		t.Fatalf("CSV has %d rows for the VM, want %d", n, len(vmRows))
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "usage", "usage-*.log")); len(ents) == 0 {
		t.Fatal("no sample files in the state directory")
	}
}

func TestUsageBadQueries(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, dir, func(c *Config) { c.UsageEvery = time.Hour })
	defer ta.Close()
	for _, q := range []string{"from=yesterday", "to=12", "step=fast", "vm=Not_A_Name",
		"from=2026-11-22T10:00:00Z&to=2026-11-22T09:00:00Z"} {
		_, err := ta.cli.Do(context.Background(), "GET", "/v1/usage?"+q, nil, &api.UsageReport{})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.StatusCode != 400 || ce.Field == "" {
			t.Errorf("GET /v1/usage?%s: %v; want 400 naming the field", q, err)
		}
	}
	// The first sample is taken at start: the host is in the report at once.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := ta.cli.Usage(context.Background(), client.UsageQuery{To: time.Now().Add(time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Samples) > 0 {
			if s := rep.Samples[0]; s.VM != "" || s.VCPUs < 1 || s.MemoryBytes == 0 {
				t.Fatalf("first sample %+v: want the host's", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no host sample 30 s after the agent started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "usage")); err != nil {
		t.Fatal(err)
	}
}

// TestUsageIOSums reads a VMM's GET /stats answer and sums its disks and NICs.
func TestUsageIOSums(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{cfg: Config{StateDir: dir}, vmAccess: vmAccess{stateDir: dir}}
	if err := os.MkdirAll(a.vmDir("io"), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(a.vmDir("io"), node.APISock))
	if err != nil {
		t.Fatal(err)
	}
	st := vmmapi.Stats{
		Disks: []vmmapi.DiskStats{{Name: "vda", ReadBytes: 100, WriteBytes: 10}, {Name: "vdb", ReadBytes: 1, WriteBytes: 2}},
		NICs:  []vmmapi.NICStats{{Name: "tap0", RxBytes: 7, TxBytes: 70}, {Name: "tap1", RxBytes: 3, TxBytes: 30}},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/stats" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(st)
	})}
	go srv.Serve(l)
	defer srv.Close()

	got, err := a.usageIO(context.Background(), usage.VMInfo{Name: "io"})
	if err != nil {
		t.Fatal(err)
	}
	want := usage.IO{DiskReadBytes: 101, DiskWriteBytes: 12, NetRxBytes: 10, NetTxBytes: 100}
	if got != want {
		t.Fatalf("usageIO = %+v, want %+v", got, want)
	}
	if _, err := a.usageIO(context.Background(), usage.VMInfo{Name: "no-such-vm"}); err == nil {
		t.Fatal("a VM without an API socket gave I/O counters")
	}
}
