package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"now", now, true},
		{"", now, true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), true},
		{"2026-11-22T10:30:00+02:00", time.Date(2026, 11, 22, 8, 30, 0, 0, time.UTC), true},
		{"-5h", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"99999999d", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseWhen(tt.in, now)
			if (err == nil) != tt.ok || !got.Equal(tt.want) {
				t.Fatalf("parseWhen(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.csv")
	if err := writeFileAtomic(p, func(w io.Writer) error { _, err := w.Write([]byte("a,b\n")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "a,b\n" {
		t.Fatalf("file holds %q", b)
	}
	// A failing renderer leaves the old file and no temporary behind.
	boom := errors.New("boom")
	if err := writeFileAtomic(p, func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	ents, _ := os.ReadDir(dir)
	if b, _ := os.ReadFile(p); string(b) != "a,b\n" || len(ents) != 1 {
		t.Fatalf("after a failed write: %q, %d entries", b, len(ents))
	}
	if err := writeFileAtomic(filepath.Join(dir, "no", "such", "dir.csv"), func(io.Writer) error { return nil }); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func TestSummaryTable(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	rep := api.UsageReport{Host: "h", Samples: []api.UsageSample{
		{Time: t0, Host: "h", VCPUs: 2, CPUSeconds: 0},
		{Time: t0.Add(10 * time.Second), Host: "h", VCPUs: 2, CPUSeconds: 5},
		{Time: t0, Host: "h", VM: "web", VCPUs: 1, HasIO: true},
		{Time: t0.Add(10 * time.Second), Host: "h", VM: "web", VCPUs: 1, CPUSeconds: 1, RSSBytes: 2 << 20, HasIO: true, DiskReadBytes: 2048},
	}}
	var buf bytes.Buffer
	summaryTable(&buf, rep)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and two rows:\n%s", buf.String())
	}
	if !strings.HasPrefix(lines[1], "(host h)\t2\t25.0%\t25.0%") {
		t.Errorf("host row %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "web\t1\t10.0%\t10.0%\t2.0 MiB\t2.0 MiB\t2.0 KiB / 0 B\t0 B / 0 B") {
		t.Errorf("VM row %q", lines[2])
	}
}
