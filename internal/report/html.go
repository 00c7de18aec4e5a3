package report

import (
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/govisor/govisor/api"
)

// Chart geometry: the plot area inside each SVG, in SVG user units.
const (
	chartW, chartH = 640, 180
	plotX0, plotX1 = 60, 620
	plotY0, plotY1 = 10, 150 // top, bottom
)

// chart is one SVG line chart of a series.
type chart struct {
	Kind       string // "cpu" or "memory": data-chart attribute
	Title      string
	Points     string // the polyline's points attribute
	YMax, YMid string // axis labels
	From, To   string
	Empty      bool
}

type section struct {
	Name   string
	Charts []chart
}

type summaryRow struct {
	Name, VCPUs, Memory, AvgCPU, PeakCPU, AvgMem, PeakMem string
	DiskRead, DiskWrite, NetRx, NetTx                     string
}

type page struct {
	Host, From, To, Generated string
	Skipped                   int
	Summary                   []summaryRow
	Sections                  []section
	W, H, X0, X1, Y0, Y1, YM  int
}

// WriteHTML writes a self-contained HTML report of rep (no scripts, no
// external assets): a summary table with averages and peaks per VM and for
// the host, and CPU % and memory charts over the window for each.
func WriteHTML(w io.Writer, rep api.UsageReport, generated time.Time) error {
	from, to := rep.From, rep.To
	series := Split(rep.Samples)
	if !to.After(from) {
		for _, s := range series {
			for _, x := range s.Samples {
				if from.IsZero() || x.Time.Before(from) {
					from = x.Time
				}
				if x.Time.After(to) {
					to = x.Time
				}
			}
		}
	}
	p := page{
		Host: rep.Host, From: from.UTC().Format(time.RFC3339), To: to.UTC().Format(time.RFC3339),
		Generated: generated.UTC().Format(time.RFC3339), Skipped: rep.Skipped,
		W: chartW, H: chartH, X0: plotX0, X1: plotX1, Y0: plotY0, Y1: plotY1, YM: (plotY0 + plotY1) / 2,
	}
	for _, s := range series {
		sum := s.Summarize()
		name := seriesName(s)
		p.Summary = append(p.Summary, summaryFor(name, sum))
		rows := s.Rows()
		cpuMax := max(100, sum.PeakCPUPercent)
		memMax := float64(max(sum.ConfiguredBytes, sum.PeakMemoryBytes, 1))
		cpu := chart{Kind: "cpu", Title: name + ": CPU %", YMax: pct(cpuMax), YMid: pct(cpuMax / 2)}
		mem := chart{Kind: "memory", Title: name + ": resident memory", YMax: Bytes(uint64(memMax)), YMid: Bytes(uint64(memMax / 2))}
		cpu.Points = Polyline(rows, from, to, cpuMax, func(r Row) float64 { return r.CPUPercent })
		mem.Points = Polyline(rows, from, to, memMax, func(r Row) float64 { return float64(r.MemoryBytes) })
		for _, c := range []*chart{&cpu, &mem} {
			c.From, c.To, c.Empty = p.From, p.To, len(rows) == 0
		}
		p.Sections = append(p.Sections, section{Name: name, Charts: []chart{cpu, mem}})
	}
	if err := pageTmpl.Execute(w, p); err != nil {
		return fmt.Errorf("report: write HTML: %w", err)
	}
	return nil
}

func seriesName(s Series) string {
	if s.VM == "" {
		return "host " + s.Host
	}
	return s.VM
}

func summaryFor(name string, s Summary) summaryRow {
	io := func(v uint64) string {
		if !s.HasIO {
			return "n/a"
		}
		return Bytes(v)
	}
	return summaryRow{
		Name: name, VCPUs: strconv.Itoa(s.VCPUs), Memory: Bytes(s.ConfiguredBytes),
		AvgCPU: pct(s.AvgCPUPercent), PeakCPU: pct(s.PeakCPUPercent),
		AvgMem: Bytes(s.AvgMemoryBytes), PeakMem: Bytes(s.PeakMemoryBytes),
		DiskRead: io(s.DiskReadBytes), DiskWrite: io(s.DiskWriteBytes), NetRx: io(s.NetRxBytes), NetTx: io(s.NetTxBytes),
	}
}

// Polyline computes an SVG points attribute: each row's value at its end
// time, x scaled from [from, to] onto the plot's width and y from
// [0, yMax] onto its height (clamped to the plot area).
func Polyline(rows []Row, from, to time.Time, yMax float64, val func(Row) float64) string {
	span := to.Sub(from).Seconds()
	if span <= 0 || yMax <= 0 {
		return ""
	}
	var b strings.Builder
	for i, r := range rows {
		fx := min(max(r.End.Sub(from).Seconds()/span, 0), 1)
		fy := min(max(val(r)/yMax, 0), 1)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", plotX0+fx*(plotX1-plotX0), plotY1-fy*(plotY1-plotY0))
	}
	return b.String()
}

func pct(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "%" }

// Bytes formats a byte count with a binary unit (B, KiB, MiB, GiB, TiB).
func Bytes(v uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(v)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatUint(v, 10) + " B"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

var pageTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>govisor utilization report: {{.Host}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
section { margin-bottom: 2em; }
svg { border: 1px solid #ddd; margin-right: 1em; }
svg text { font-size: 11px; fill: #555; }
.grid { stroke: #eee; }
.axis { stroke: #999; }
.cpu { fill: none; stroke: #1f6fb2; stroke-width: 1.5; }
.memory { fill: none; stroke: #b25a1f; stroke-width: 1.5; }
</style>
</head>
<body>
<h1>Utilization report: {{.Host}}</h1>
<p>From {{.From}} to {{.To}}. Generated {{.Generated}}.{{if .Skipped}} {{.Skipped}} damaged samples were skipped.{{end}}</p>
<p>VM CPU % is of the VM's vCPUs (100% = all busy; the VMM's own work can push it above); the host's is of all its CPUs. Memory is the VMM's resident memory (the host: memory in use).</p>
<h2>Summary</h2>
<table id="summary">
<thead><tr><th>VM</th><th>vCPUs</th><th>memory</th><th>avg CPU</th><th>peak CPU</th><th>avg resident</th><th>peak resident</th><th>disk read</th><th>disk written</th><th>net received</th><th>net sent</th></tr></thead>
<tbody>
{{- range .Summary}}
<tr><td>{{.Name}}</td><td>{{.VCPUs}}</td><td>{{.Memory}}</td><td>{{.AvgCPU}}</td><td>{{.PeakCPU}}</td><td>{{.AvgMem}}</td><td>{{.PeakMem}}</td><td>{{.DiskRead}}</td><td>{{.DiskWrite}}</td><td>{{.NetRx}}</td><td>{{.NetTx}}</td></tr>
{{- end}}
</tbody>
</table>
{{- $p := .}}
{{- range .Sections}}
<section>
<h2>{{.Name}}</h2>
{{- range .Charts}}
<svg xmlns="http://www.w3.org/2000/svg" width="{{$p.W}}" height="{{$p.H}}" viewBox="0 0 {{$p.W}} {{$p.H}}" role="img" aria-label="{{.Title}}" data-chart="{{.Kind}}">
<title>{{.Title}}</title>
<line class="grid" x1="{{$p.X0}}" y1="{{$p.Y0}}" x2="{{$p.X1}}" y2="{{$p.Y0}}"/>
<line class="grid" x1="{{$p.X0}}" y1="{{$p.YM}}" x2="{{$p.X1}}" y2="{{$p.YM}}"/>
<line class="axis" x1="{{$p.X0}}" y1="{{$p.Y1}}" x2="{{$p.X1}}" y2="{{$p.Y1}}"/>
<line class="axis" x1="{{$p.X0}}" y1="{{$p.Y0}}" x2="{{$p.X0}}" y2="{{$p.Y1}}"/>
<text x="{{$p.X0}}" y="{{$p.Y0}}" dx="-4" dy="4" text-anchor="end">{{.YMax}}</text>
<text x="{{$p.X0}}" y="{{$p.YM}}" dx="-4" dy="4" text-anchor="end">{{.YMid}}</text>
<text x="{{$p.X0}}" y="{{$p.Y1}}" dx="-4" dy="4" text-anchor="end">0</text>
<text x="{{$p.X0}}" y="{{$p.Y1}}" dy="16">{{.From}}</text>
<text x="{{$p.X1}}" y="{{$p.Y1}}" dy="16" text-anchor="end">{{.To}}</text>
{{- if .Empty}}
<text x="340" y="80" text-anchor="middle">fewer than two samples in this window</text>
{{- else}}
<polyline class="{{.Kind}}" points="{{.Points}}"/>
{{- end}}
</svg>
{{- end}}
</section>
{{- end}}
</body>
</html>
`))
