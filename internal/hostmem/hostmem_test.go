package hostmem

import (
	"strings"
	"testing"
)

func TestMemTotalMiB(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
	}{
		{"MemTotal:        8058176 kB\nMemFree:         1234567 kB\n", 7869},
		{"MemFree:         1234567 kB\nMemTotal:        1048576 kB\n", 1024},
		{"MemFree:         1234567 kB\n", 0},
		{"MemTotal: lots kB\n", 0},
		{"", 0},
	} {
		if got := memTotalMiB(strings.NewReader(c.in)); got != c.want {
			t.Errorf("memTotalMiB(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestTotalMiB reads this machine's figure: Linux always has one.
func TestTotalMiB(t *testing.T) {
	if got := TotalMiB(); got == 0 {
		t.Fatal("no MemTotal in /proc/meminfo")
	}
}
