package usage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func vmSample(at time.Time, vm string, cpu float64) Sample {
	return Sample{Time: at, Host: "h", VM: vm, State: "running", VCPUs: 1, MemoryBytes: 64 << 20, CPUSeconds: cpu}
}

func names(ss []Sample) []string {
	var out []string
	for _, s := range ss {
		n := s.VM
		if n == "" {
			n = "(host)"
		}
		out = append(out, s.Time.Format("15:04:05")+" "+n)
	}
	return out
}

func TestStoreQuery(t *testing.T) {
	st, err := OpenStore(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Three rounds 10 s apart, then one an hour later (a second file).
	var all []Sample
	for i, at := range []time.Time{t0, t0.Add(10 * time.Second), t0.Add(20 * time.Second), t0.Add(time.Hour)} {
		round := []Sample{
			{Time: at, Host: "h", State: "up", VCPUs: 2, CPUSeconds: float64(i)},
			vmSample(at, "b", float64(i)), vmSample(at, "a", float64(i)),
		}
		if err := st.Append(round...); err != nil {
			t.Fatal(err)
		}
		all = append(all, round...)
	}
	if fs, _ := st.files(); len(fs) != 2 {
		t.Fatalf("%d files, want one per hour (2)", len(fs))
	}
	tests := []struct {
		name string
		q    Query
		want []string
	}{
		{"everything", Query{From: t0, To: t0.Add(2 * time.Hour)}, []string{
			"10:00:00 (host)", "10:00:00 a", "10:00:00 b", "10:00:10 (host)", "10:00:10 a", "10:00:10 b",
			"10:00:20 (host)", "10:00:20 a", "10:00:20 b", "11:00:00 (host)", "11:00:00 a", "11:00:00 b"}},
		{"window inclusive", Query{From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second), VM: "a"}, []string{
			"10:00:10 (host)", "10:00:10 a", "10:00:20 (host)", "10:00:20 a"}},
		{"second file only", Query{From: t0.Add(30 * time.Minute), To: t0.Add(3 * time.Hour), VM: "b"}, []string{
			"11:00:00 (host)", "11:00:00 b"}},
		{"step thins each series", Query{From: t0, To: t0.Add(2 * time.Hour), VM: "a", Step: 15 * time.Second}, []string{
			"10:00:00 (host)", "10:00:00 a", "10:00:20 (host)", "10:00:20 a", "11:00:00 (host)", "11:00:00 a"}},
		{"empty window", Query{From: t0.Add(2 * time.Hour), To: t0.Add(3 * time.Hour)}, nil},
		{"reversed window", Query{From: t0.Add(time.Hour), To: t0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := st.Query(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(names(res.Samples), ","); got != strings.Join(tt.want, ",") {
				t.Fatalf("got  %s\nwant %s", got, strings.Join(tt.want, ","))
			}
			if res.Skipped != 0 {
				t.Fatalf("skipped %d lines", res.Skipped)
			}
		})
	}
	if _, err := st.Query(Query{From: t0, To: t0.Add(2 * time.Hour), MaxSamples: 11}); !errors.Is(err, ErrTooMany) {
		t.Fatalf("12 samples with MaxSamples 11: %v, want ErrTooMany", err)
	}
	if res, err := st.Query(Query{From: t0, To: t0.Add(2 * time.Hour), MaxSamples: 12}); err != nil || len(res.Samples) != 12 {
		t.Fatalf("12 samples with MaxSamples 12: %d, %v", len(res.Samples), err)
	}
	res, _ := st.Query(Query{From: t0, To: t0.Add(2 * time.Hour)})
	if res.Samples[4] != all[5] { // 10:00:10 a, as written
		t.Fatalf("sample read back as %+v, written as %+v", res.Samples[4], all[5])
	}
}

// A crash mid-write leaves a torn last line: queries skip it, and the next
// append (by a restarted agent) is not glued to it.
func TestStoreTornLine(t *testing.T) {
	dir := t.TempDir()
	st, _ := OpenStore(dir, 0)
	if err := st.Append(vmSample(t0, "a", 1)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	path := st.fileFor(t0)
	whole := AppendLine(nil, vmSample(t0.Add(time.Second), "a", 2))
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(whole[:len(whole)/2])
	f.Close()

	res, err := st.Query(Query{From: t0, To: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Samples) != 1 || res.Skipped != 1 {
		t.Fatalf("after a torn write: %d samples, %d skipped; want 1 and 1", len(res.Samples), res.Skipped)
	}
	st2, _ := OpenStore(dir, 0)
	if err := st2.Append(vmSample(t0.Add(2*time.Second), "a", 3)); err != nil {
		t.Fatal(err)
	}
	st2.Close()
	res, _ = st2.Query(Query{From: t0, To: t0.Add(time.Hour)})
	if got := names(res.Samples); len(got) != 2 || got[1] != "10:00:02 a" || res.Skipped != 1 {
		t.Fatalf("after restart and append: %v, %d skipped; want the first and the new sample, 1 skipped", got, res.Skipped)
	}
}

func TestStorePrune(t *testing.T) {
	dir := t.TempDir()
	st, _ := OpenStore(dir, 48*time.Hour)
	defer st.Close()
	for h := range 5 {
		at := t0.Add(time.Duration(h) * 24 * time.Hour)
		if err := st.Append(vmSample(at, "a", float64(h))); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("keep me"), 0o600)
	now := t0.Add(4*24*time.Hour + 30*time.Minute)
	if err := st.Prune(now); err != nil {
		t.Fatal(err)
	}
	res, _ := st.Query(Query{From: t0, To: now})
	// Kept: hours ending no earlier than now-48h: days 2, 3 and 4.
	if len(res.Samples) != 3 || !res.Samples[0].Time.Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("after pruning: %v", names(res.Samples))
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatal("prune removed a file that is not a sample file")
	}
	// Appending after a prune still works (the open file may have been pruned).
	if err := st.Append(vmSample(now, "a", 9)); err != nil {
		t.Fatal(err)
	}
}

func TestReadSamples(t *testing.T) {
	good := AppendLine(nil, vmSample(t0, "a", 1))
	tests := []struct {
		name        string
		in          []byte
		ok, skipped int
	}{
		{"empty", nil, 0, 0},
		{"one", good, 1, 0},
		{"blank lines", append(append([]byte("\n\n"), good...), '\n'), 1, 0},
		{"torn tail", append(append([]byte{}, good...), good[:10]...), 1, 1},
		{"overlong line", append(append(bytes.Repeat([]byte("x"), 3*maxLine), '\n'), good...), 1, 1},
		{"overlong tail", append(append([]byte{}, good...), bytes.Repeat([]byte("x"), 3*maxLine)...), 1, 1},
		{"garbage between", append(append(append([]byte{}, good...), "junk\n"...), good...), 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			skipped, err := ReadSamples(bytes.NewReader(tt.in), func(Sample) { n++ })
			if err != nil || n != tt.ok || skipped != tt.skipped {
				t.Fatalf("got %d samples, %d skipped, %v; want %d, %d", n, skipped, err, tt.ok, tt.skipped)
			}
		})
	}
}

func FuzzReadSamples(f *testing.F) {
	good := AppendLine(nil, vmSample(t0, "a", 1))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good[:7]...))
	f.Add([]byte("\n\nx\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := 0
		skipped, err := ReadSamples(bytes.NewReader(in), func(s Sample) {
			if s.VCPUs < 0 || s.CPUSeconds < 0 {
				t.Fatalf("invalid sample accepted: %+v", s)
			}
			n++
		})
		if err != nil {
			t.Fatalf("read error on an in-memory reader: %v", err)
		}
		if lines := bytes.Count(in, []byte{'\n'}) + 1; n+skipped > lines {
			t.Fatalf("%d samples and %d skipped from %d lines", n, skipped, lines)
		}
	})
}
