package usage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestParsePidStat(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		ticks uint64
		ok    bool
	}{
		{"plain", "42 (govisor) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0", 300, true},
		{"name with spaces and parens", "42 (a b) c) R 1 42 42 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 5", 15, true},
		{"no name", "42 govisor S", 0, false},
		{"short", "42 (x) S 1 2 3", 0, false},
		{"bad number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 x 8 0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePidStat([]byte(tt.in))
			if (err == nil) != tt.ok || got != tt.ticks {
				t.Fatalf("got %d, %v; want %d, ok=%v", got, err, tt.ticks, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrProcFormat) {
				t.Fatalf("error %v is not ErrProcFormat", err)
			}
		})
	}
}

func TestParseHostStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		cpus int
		busy float64
		ok   bool
	}{
		{"two cpus", "cpu  100 10 50 1000 20 5 5 0 30 0\ncpu0 50 5 25 500 10 3 2 0 15 0\ncpu1 50 5 25 500 10 2 3 0 15 0\nintr 1\n", 2, 1.70, true},
		{"old kernel, 4 columns", "cpu 100 0 100 800\ncpu0 100 0 100 800\n", 1, 2, true},
		{"no cpu line", "intr 1\n", 0, 0, false},
		{"bad column", "cpu 1 x 3 4 5\n", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpus, busy, err := parseHostStat([]byte(tt.in))
			if (err == nil) != tt.ok || cpus != tt.cpus || busy != tt.busy {
				t.Fatalf("got %d cpus, %v s, %v; want %d, %v, ok=%v", cpus, busy, err, tt.cpus, tt.busy, tt.ok)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		total, used uint64
		ok          bool
	}{
		{"normal", "MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   512 kB\n", 2048 << 10, 1536 << 10, true},
		{"available above total", "MemTotal: 10 kB\nMemAvailable: 20 kB\n", 10 << 10, 0, true},
		{"missing available", "MemTotal: 10 kB\n", 0, 0, false},
		{"bad unit", "MemTotal: 10 MB\nMemAvailable: 5 kB\n", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, used, err := parseMeminfo([]byte(tt.in))
			if (err == nil) != tt.ok || total != tt.total || used != tt.used {
				t.Fatalf("got %d, %d, %v; want %d, %d, ok=%v", total, used, err, tt.total, tt.used, tt.ok)
			}
		})
	}
}

// fakeProc writes a procfs tree in the kernel's formats under a directory.
func fakeProc(t *testing.T, pids map[int][2]uint64) ProcFS {
	root := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "cpu  300 0 100 1000 0 0 0 0 0 0\ncpu0 150 0 50 500 0 0 0 0 0 0\ncpu1 150 0 50 500 0 0 0 0 0 0\n")
	write("meminfo", "MemTotal: 4096 kB\nMemAvailable: 1024 kB\n")
	for pid, v := range pids {
		d := filepath.Join(itoa(pid))
		write(filepath.Join(d, "stat"), itoa(pid)+" (govisor) S 1 1 1 0 -1 0 0 0 0 0 "+utoa(v[0])+" 0 0 0 20 0 1 0 9")
		write(filepath.Join(d, "statm"), "100 "+utoa(v[1])+" 0 0 0 0 0")
	}
	return ProcFS{Root: root, PageSize: 4096}
}

func itoa(i int) string    { return strconv.Itoa(i) }
func utoa(u uint64) string { return strconv.FormatUint(u, 10) }

func TestSampler(t *testing.T) {
	st, _ := OpenStore(t.TempDir(), 0)
	proc := fakeProc(t, map[int][2]uint64{77: {250, 10}})
	now := t0
	s, err := NewSampler(Config{
		Store: st, Host: "h", Proc: proc, Now: func() time.Time { return now },
		ListVMs: func(context.Context) ([]VMInfo, error) {
			return []VMInfo{
				{Name: "up", State: "running", VCPUs: 2, MemoryBytes: 1 << 30, PID: 77},
				{Name: "gone", State: "running", VCPUs: 1, PID: 78}, // exited since the listing
				{Name: "off", State: "stopped", VCPUs: 1},
			}, nil
		},
		ReadIO: func(_ context.Context, v VMInfo) (IO, error) {
			if v.Name != "up" {
				return IO{}, errors.New("no API socket")
			}
			return IO{DiskReadBytes: 1, DiskWriteBytes: 2, NetRxBytes: 3, NetTxBytes: 4}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SampleOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := st.Query(Query{From: t0, To: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := []Sample{
		{Time: t0, Host: "h", State: "up", VCPUs: 2, MemoryBytes: 4 << 20, CPUSeconds: 4, RSSBytes: 3 << 20},
		{Time: t0, Host: "h", VM: "gone", State: "running", VCPUs: 1},
		{Time: t0, Host: "h", VM: "off", State: "stopped", VCPUs: 1},
		{Time: t0, Host: "h", VM: "up", State: "running", VCPUs: 2, MemoryBytes: 1 << 30, CPUSeconds: 2.5, RSSBytes: 10 * 4096,
			HasIO: true, DiskReadBytes: 1, DiskWriteBytes: 2, NetRxBytes: 3, NetTxBytes: 4},
	}
	if len(res.Samples) != len(want) {
		t.Fatalf("%d samples, want %d: %+v", len(res.Samples), len(want), res.Samples)
	}
	for i := range want {
		if res.Samples[i] != want[i] {
			t.Errorf("sample %d:\n got %+v\nwant %+v", i, res.Samples[i], want[i])
		}
	}
}

func TestSamplerRealProc(t *testing.T) {
	st, _ := OpenStore(t.TempDir(), 0)
	s, _ := NewSampler(Config{Store: st, Host: "h", ListVMs: func(context.Context) ([]VMInfo, error) {
		return []VMInfo{{Name: "self", State: "running", PID: os.Getpid()}}, nil
	}})
	got, err := s.Measure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].VCPUs < 1 || got[0].MemoryBytes == 0 || got[0].CPUSeconds <= 0 || got[1].RSSBytes == 0 {
		t.Fatalf("host and own process read from /proc: %+v", got)
	}
}

func TestNewSamplerNeedsConfig(t *testing.T) {
	if _, err := NewSampler(Config{Host: "h"}); err == nil {
		t.Fatal("a sampler without store and ListVMs was accepted")
	}
}
