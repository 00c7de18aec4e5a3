package usage

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestLineRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    Sample
	}{
		{"host", Sample{Time: t0, Host: "h1", State: "up", VCPUs: 2, MemoryBytes: 8 << 30, CPUSeconds: 1234.56, RSSBytes: 3 << 30}},
		{"vm with io", Sample{Time: t0.Add(1500 * time.Millisecond), Host: "h1", VM: "web-1", State: "running", VCPUs: 4, MemoryBytes: 1 << 30,
			CPUSeconds: 0.01, RSSBytes: 1 << 20, HasIO: true, DiskReadBytes: 1, DiskWriteBytes: 2, NetRxBytes: 3, NetTxBytes: 1<<64 - 1}},
		{"odd names", Sample{Time: t0, Host: "my host\n%~", VM: "a b", State: "", VCPUs: 1}},
		{"zero time", Sample{Time: time.UnixMilli(0).UTC(), Host: "h", VM: "v", State: "stopped"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := AppendLine(nil, tt.s)
			if !bytes.HasSuffix(line, []byte{'\n'}) || bytes.Count(line, []byte{'\n'}) != 1 {
				t.Fatalf("line %q: want exactly one trailing newline", line)
			}
			got, err := ParseLine(line[:len(line)-1])
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", line, err)
			}
			if !reflect.DeepEqual(got, tt.s) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.s)
			}
		})
	}
}

func TestParseLineRejects(t *testing.T) {
	good := string(AppendLine(nil, Sample{Time: t0, Host: "h", VM: "v", State: "running", VCPUs: 1, CPUSeconds: 2}))
	good = strings.TrimSuffix(good, "\n")
	// resum recomputes the checksum, so that the field checks themselves are tested.
	resum := func(body string) string { return body + " " + lineCRC([]byte(body)) }
	body := good[:strings.LastIndexByte(good, ' ')]
	tests := []struct {
		name, line string
	}{
		{"empty", ""},
		{"no checksum", "1"},
		{"flipped byte", strings.Replace(good, "running", "runnine", 1)},
		{"torn", good[:len(good)-3]},
		{"short checksum", body + " abc"},
		{"wrong version", resum("2" + body[1:])},
		{"too few fields", resum("1 0 h v")},
		{"negative cpu", resum(strings.Replace(body, " 2 0 0", " -2 0 0", 1))},
		{"bad name escape", resum(strings.Replace(body, " h ", " %zz ", 1))},
		{"space-free junk name", resum(strings.Replace(body, " h ", " h\x01 ", 1))},
		{"too long", strings.Repeat("x", maxLine+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := ParseLine([]byte(tt.line)); !errors.Is(err, ErrBadLine) {
				t.Fatalf("ParseLine(%q) = %+v, %v; want ErrBadLine", tt.line, s, err)
			}
		})
	}
}

func TestLongNamesAreCut(t *testing.T) {
	s := Sample{Time: t0, Host: strings.Repeat("é", 300), VM: strings.Repeat(" ", 300), State: "running"}
	line := AppendLine(nil, s)
	if len(line) > maxLine {
		t.Fatalf("line of %d bytes exceeds %d", len(line), maxLine)
	}
	got, err := ParseLine(line[:len(line)-1])
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Host) != maxName || len(got.VM) != maxName {
		t.Fatalf("names cut to %d and %d bytes, want %d", len(got.Host), len(got.VM), maxName)
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add(AppendLine(nil, Sample{Time: t0, Host: "h", VM: "v", State: "running", VCPUs: 2, CPUSeconds: 1.5, HasIO: true, NetRxBytes: 7}))
	f.Add(AppendLine(nil, Sample{Time: t0, Host: "a b", State: "up"}))
	f.Add([]byte("1 0 ~ ~ ~ 0 0 0 0 0 0 0 0 0 00000000"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.TrimSuffix(line, []byte{'\n'})
		s, err := ParseLine(line)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip unchanged.
		again := AppendLine(nil, s)
		s2, err := ParseLine(again[:len(again)-1])
		if err != nil {
			t.Fatalf("re-encoded line %q does not parse: %v", again, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed %+v to %+v", s, s2)
		}
	})
}
