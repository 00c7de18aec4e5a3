package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResetReport: QEMU's reset log is reported only when the lab host
// reset after power-on, and a triple fault is named.
func TestResetReport(t *testing.T) {
	powerOn := strings.Repeat("CPU Reset (CPU 0)\nRAX=0\nCPU Reset (CPU 1)\nRAX=0\n", 2)
	for _, tc := range []struct {
		name, log string
		want      string // a substring of the report; "" for none
	}{
		{"power-on only", powerOn, ""},
		{"triple fault", powerOn + "Triple fault\n", "Triple fault"},
		{"a reset after power-on", powerOn + "CPU Reset (CPU 0)\nRIP=ffffffff81000000\n", "RIP=ffffffff81000000"},
		{"no log", "", ""},
	} {
		path := filepath.Join(t.TempDir(), ResetLog)
		if tc.log != "" {
			if err := os.WriteFile(path, []byte(tc.log), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got := resetReport(path)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: resetReport = %q, want one with %q", tc.name, got, tc.want)
		}
	}
}
