package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/report"
)

func newReportCmd() *cobra.Command {
	f := &apiFlags{}
	var from, to, htmlPath, csvPath, vm string
	var step time.Duration
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write a utilization report of the host and its VMs (HTML with charts, CSV)",
		Long: `Write a utilization report of the agent's host and its VMs over a time
window: CPU %, resident memory, disk and network rates, from the samples
the agent takes every 10 seconds and keeps for 7 days.

--html writes one self-contained HTML file (summary table, SVG charts);
--csv writes one row per VM (and the host, with an empty vm column) per
sampling interval. With neither, a summary table is printed.

--from and --to take "now", a duration back from now (90m, 24h, 7d), a
date (2006-01-02, UTC) or an RFC 3339 time.
` + exitCodesHelp,
		Example: "  govisor report --from 24h --to now --html report.html --csv report.csv\n  govisor report --from 7d --vm web-1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			t0, err := parseWhen(from, now)
			if err != nil {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--from: %w", err)}
			}
			t1, err := parseWhen(to, now)
			if err != nil {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--to: %w", err)}
			}
			if t1.Before(t0) {
				return &ExitError{Code: exitInvalid, Err: fmt.Errorf("--from %s is after --to %s", from, to)}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			rep, err := c.Usage(cmd.Context(), client.UsageQuery{From: t0, To: t1, VM: vm, Step: step})
			if err != nil {
				return apiErr(err)
			}
			if htmlPath != "" {
				if err := writeFileAtomic(htmlPath, func(w io.Writer) error { return report.WriteHTML(w, rep, now) }); err != nil {
					return err
				}
			}
			if csvPath != "" {
				rows := report.Rows(rep.Samples)
				if err := writeFileAtomic(csvPath, func(w io.Writer) error { return report.WriteCSV(w, rows) }); err != nil {
					return err
				}
			}
			if htmlPath != "" || csvPath != "" {
				return nil
			}
			return f.print(cmd.OutOrStdout(), rep, func(w io.Writer) { summaryTable(w, rep) })
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "24h", "start of the window: now, a duration ago (24h, 7d), a date or an RFC 3339 time")
	fl.StringVar(&to, "to", "now", "end of the window, in the same forms as --from")
	fl.StringVar(&htmlPath, "html", "", "write the HTML report (charts and summary) to this file")
	fl.StringVar(&csvPath, "csv", "", "write the per-interval CSV to this file")
	fl.StringVar(&vm, "vm", "", "only this VM (and the host)")
	fl.DurationVar(&step, "step", 0, "at most one sample per VM per step, e.g. 5m (default: the agent thins wide windows to about 1000 points)")
	return cmd
}

// summaryTable prints the per-VM averages and peaks for humans.
func summaryTable(w io.Writer, rep api.UsageReport) {
	fmt.Fprintln(w, "VM\tVCPUS\tAVG CPU\tPEAK CPU\tAVG MEM\tPEAK MEM\tDISK R/W\tNET RX/TX")
	for _, s := range report.Split(rep.Samples) {
		sum := s.Summarize()
		name := s.VM
		if name == "" {
			name = "(host " + s.Host + ")"
		}
		disk, net := "-", "-"
		if sum.HasIO {
			disk = report.Bytes(sum.DiskReadBytes) + " / " + report.Bytes(sum.DiskWriteBytes)
			net = report.Bytes(sum.NetRxBytes) + " / " + report.Bytes(sum.NetTxBytes)
		}
		fmt.Fprintf(w, "%s\t%d\t%.1f%%\t%.1f%%\t%s\t%s\t%s\t%s\n", name, sum.VCPUs, sum.AvgCPUPercent, sum.PeakCPUPercent,
			report.Bytes(sum.AvgMemoryBytes), report.Bytes(sum.PeakMemoryBytes), disk, net)
	}
}

// parseWhen reads a point in time: "now", a duration back from now (Go
// syntax, plus whole days as "7d"), a date (UTC midnight) or RFC 3339.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "now":
		return now, nil
	case strings.HasSuffix(s, "d"):
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 && n <= 3660 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: give a positive duration (time back from now)", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q: want now, a duration such as 24h or 7d, a date or an RFC 3339 time", s)
}

// writeFileAtomic writes path through a temporary file renamed into place,
// so a failure never leaves a half-written report behind.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	_, werr := tmp.Write(buf.Bytes())
	cerr := tmp.Close()
	if werr == nil && cerr == nil {
		os.Chmod(tmp.Name(), 0o644)
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil || cerr != nil {
		os.Remove(tmp.Name())
		if werr == nil {
			werr = cerr
		}
		return fmt.Errorf("report: write %s: %w", path, werr)
	}
	return nil
}
