package report

import (
	"bytes"
	"encoding/csv"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func smp(sec int, vm string, vcpus int, cpu float64, rss uint64) api.UsageSample {
	return api.UsageSample{Time: t0.Add(time.Duration(sec) * time.Second), Host: "h", VM: vm, State: "running",
		VCPUs: vcpus, MemoryBytes: 1 << 30, CPUSeconds: cpu, RSSBytes: rss}
}

func withIO(s api.UsageSample, rd, wr, rx, tx uint64) api.UsageSample {
	s.HasIO, s.DiskReadBytes, s.DiskWriteBytes, s.NetRxBytes, s.NetTxBytes = true, rd, wr, rx, tx
	return s
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestRows(t *testing.T) {
	tests := []struct {
		name    string
		samples []api.UsageSample
		want    []Row
	}{
		{"one vCPU half busy", []api.UsageSample{smp(0, "a", 1, 10, 100), smp(10, "a", 1, 15, 200)},
			[]Row{{CPUPercent: 50, MemoryBytes: 200}}},
		{"two vCPUs", []api.UsageSample{smp(0, "a", 2, 0, 1), smp(10, "a", 2, 10, 1)},
			[]Row{{CPUPercent: 50, MemoryBytes: 1}}},
		{"restart resets the counter", []api.UsageSample{smp(0, "a", 1, 100, 1), smp(10, "a", 1, 2, 1)},
			[]Row{{CPUPercent: 20, MemoryBytes: 1}}},
		{"same time twice", []api.UsageSample{smp(0, "a", 1, 0, 1), smp(0, "a", 1, 1, 1)}, nil},
		{"out of order input", []api.UsageSample{smp(20, "a", 1, 4, 3), smp(0, "a", 1, 0, 1), smp(10, "a", 1, 1, 2)},
			[]Row{{CPUPercent: 10, MemoryBytes: 2}, {CPUPercent: 30, MemoryBytes: 3}}},
		{"io rates", []api.UsageSample{withIO(smp(0, "a", 1, 0, 1), 0, 0, 0, 0), withIO(smp(4, "a", 1, 0, 1), 400, 800, 40, 4)},
			[]Row{{MemoryBytes: 1, HasIO: true, DiskReadBps: 100, DiskWriteBps: 200, NetRxBps: 10, NetTxBps: 1}}},
		{"io known on one side only", []api.UsageSample{smp(0, "a", 1, 0, 1), withIO(smp(4, "a", 1, 0, 1), 400, 0, 0, 0)},
			[]Row{{MemoryBytes: 1}}},
		{"zero vCPUs counts as one", []api.UsageSample{smp(0, "a", 0, 0, 1), smp(10, "a", 0, 1, 1)},
			[]Row{{CPUPercent: 10, MemoryBytes: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Rows(tt.samples)
			if len(got) != len(tt.want) {
				t.Fatalf("%d rows, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				g := got[i]
				if !near(g.CPUPercent, w.CPUPercent) || g.MemoryBytes != w.MemoryBytes || g.HasIO != w.HasIO ||
					!near(g.DiskReadBps, w.DiskReadBps) || !near(g.DiskWriteBps, w.DiskWriteBps) ||
					!near(g.NetRxBps, w.NetRxBps) || !near(g.NetTxBps, w.NetTxBps) {
					t.Errorf("row %d: got %+v, want %+v", i, g, w)
				}
				if g.VM != "a" || g.Host != "h" || !g.End.After(g.Start) {
					t.Errorf("row %d: names or times wrong: %+v", i, g)
				}
			}
		})
	}
}

func TestSplitOrder(t *testing.T) {
	ss := Split([]api.UsageSample{smp(0, "b", 1, 0, 0), smp(0, "", 2, 0, 0), smp(0, "a", 1, 0, 0), smp(10, "b", 1, 0, 0)})
	var got []string
	for _, s := range ss {
		got = append(got, s.VM+"/"+strings.Repeat("x", len(s.Samples)))
	}
	if strings.Join(got, " ") != "/x a/x b/xx" {
		t.Fatalf("series order %v: want the host first, then VMs by name", got)
	}
}

func TestSummarize(t *testing.T) {
	s := Split([]api.UsageSample{
		withIO(smp(0, "a", 1, 0, 100), 0, 0, 0, 0),
		withIO(smp(10, "a", 1, 1, 300), 1000, 0, 10, 0),    // 10%, 100 B/s read
		withIO(smp(40, "a", 1, 28, 100), 4000, 30, 10, 60), // 90%
	})[0].Summarize()
	want := Summary{Host: "h", VM: "a", VCPUs: 1, ConfiguredBytes: 1 << 30, Intervals: 2, Seconds: 40,
		AvgCPUPercent: 70, PeakCPUPercent: 90, AvgMemoryBytes: 150, PeakMemoryBytes: 300,
		HasIO: true, DiskReadBytes: 4000, DiskWriteBytes: 30, NetRxBytes: 10, NetTxBytes: 60}
	if !near(s.AvgCPUPercent, want.AvgCPUPercent) || !near(s.PeakCPUPercent, want.PeakCPUPercent) {
		t.Fatalf("CPU avg %v peak %v, want %v %v", s.AvgCPUPercent, s.PeakCPUPercent, want.AvgCPUPercent, want.PeakCPUPercent)
	}
	s.AvgCPUPercent, s.PeakCPUPercent = want.AvgCPUPercent, want.PeakCPUPercent
	if s != want {
		t.Fatalf("summary\n got %+v\nwant %+v", s, want)
	}
}

func TestWriteCSV(t *testing.T) {
	rows := Rows([]api.UsageSample{
		smp(0, "", 2, 0, 1<<30), smp(10, "", 2, 5, 2<<30),
		withIO(smp(0, "web", 1, 0, 5), 0, 0, 0, 0), withIO(smp(10, "web", 1, 2.5, 7), 10, 20, 30, 45),
	})
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("output does not parse as CSV: %v\n%s", err, buf.String())
	}
	want := [][]string{
		CSVHeader,
		{"2026-11-22T10:00:10Z", "h", "", "25.00", "2147483648", "", "", "", ""},
		{"2026-11-22T10:00:10Z", "h", "web", "25.00", "7", "1.0", "2.0", "3.0", "4.5"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d:\n%s", len(recs), len(want), buf.String())
	}
	for i := range want {
		if strings.Join(recs[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("record %d: %q, want %q", i, recs[i], want[i])
		}
	}
}

var (
	titleRE = regexp.MustCompile(`<title>([^<]*)</title>`)
	polyRE  = regexp.MustCompile(`<polyline class="(?:cpu|memory)" points="([^"]*)"`)
)

func TestWriteHTML(t *testing.T) {
	rep := api.UsageReport{
		Host: "h", From: t0, To: t0.Add(100 * time.Second),
		Samples: []api.UsageSample{
			smp(0, "", 2, 0, 512<<20), smp(50, "", 2, 50, 512<<20), smp(100, "", 2, 150, 768<<20),
			smp(0, "vm<1>", 1, 0, 0), smp(50, "vm<1>", 1, 25, 256<<20), smp(100, "vm<1>", 1, 75, 1<<30),
			smp(100, "lonely", 1, 0, 0),
		},
	}
	rep.Samples[0].MemoryBytes = 1 << 30 // the host's RAM
	var buf bytes.Buffer
	if err := WriteHTML(&buf, rep, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, bad := range []string{"<script", "src=", "href=", "vm<1>"} {
		if strings.Contains(out, bad) {
			t.Errorf("report contains %q: it must be self-contained and escaped", bad)
		}
	}
	got := map[string]string{}
	for _, svg := range strings.Split(out, "<svg ")[1:] {
		svg, _, _ = strings.Cut(svg, "</svg>")
		title, poly := titleRE.FindStringSubmatch(svg), polyRE.FindStringSubmatch(svg)
		if title != nil && poly != nil {
			got[title[1]] = poly[1]
		}
	}
	// x: 50 s of 100 -> 60+0.5*560 = 340; 100 s -> 620. y: 150 - v/max*140.
	want := map[string]string{
		"host h: CPU %":                "340.0,80.0 620.0,10.0",  // 50%, 100% of 2 CPUs
		"host h: resident memory":      "340.0,80.0 620.0,45.0",  // 512 and 768 MiB of 1 GiB
		"vm&lt;1&gt;: CPU %":           "340.0,80.0 620.0,10.0",  // 50%, 100%
		"vm&lt;1&gt;: resident memory": "340.0,115.0 620.0,10.0", // 256 MiB, 1 GiB of 1 GiB
	}
	for title, pts := range want {
		if got[title] != pts {
			t.Errorf("chart %q: points %q, want %q", title, got[title], pts)
		}
	}
	if len(got) != len(want) {
		t.Errorf("charts with lines: %q; want only %d (the lonely VM has one sample)", got, len(want))
	}
	if !strings.Contains(out, "fewer than two samples") {
		t.Error("a VM with one sample has no placeholder chart")
	}
	// The summary row of vm<1>: avg CPU 75% (25 s then 50 s of 50 s each), peak 100%.
	if !strings.Contains(out, "<tr><td>vm&lt;1&gt;</td><td>1</td><td>1.0 GiB</td><td>75.0%</td><td>100.0%</td><td>640.0 MiB</td><td>1.0 GiB</td><td>n/a</td>") {
		t.Errorf("summary row of vm<1> missing or wrong:\n%s", out)
	}
}

func TestPolylineClamps(t *testing.T) {
	rows := []Row{{End: t0.Add(-time.Second), CPUPercent: -5}, {End: t0.Add(time.Hour), CPUPercent: 500}}
	if got := Polyline(rows, t0, t0.Add(time.Minute), 100, func(r Row) float64 { return r.CPUPercent }); got != "60.0,150.0 620.0,10.0" {
		t.Fatalf("got %q: points must stay inside the plot", got)
	}
	if got := Polyline(rows, t0, t0, 100, func(r Row) float64 { return 0 }); got != "" {
		t.Fatalf("empty window gave %q", got)
	}
}

func TestBytes(t *testing.T) {
	for _, tt := range []struct {
		v    uint64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536 << 20, "1.5 GiB"}, {1 << 52, "4096.0 TiB"}} {
		if got := Bytes(tt.v); got != tt.want {
			t.Errorf("Bytes(%d) = %q, want %q", tt.v, got, tt.want)
		}
	}
}
