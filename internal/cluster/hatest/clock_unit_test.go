package hatest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWaitLineScript runs waitLine's script here: it waits for a file that
// does not exist yet, skips other lines, joins a line written in two
// halves, and prints an uptime; it gives up after its limit.
func TestWaitLineScript(t *testing.T) {
	f := filepath.Join(t.TempDir(), "console.log")
	go func() {
		time.Sleep(200 * time.Millisecond)
		w, err := os.Create(f)
		if err != nil {
			return
		}
		defer w.Close()
		for _, s := range []string{"booting\n", "HA-ALIVE 0\nHA-AL", "IVE 1\n"} {
			time.Sleep(150 * time.Millisecond)
			w.WriteString(s)
		}
	}()
	start, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", waitLineScript(10*time.Second), "sh", f, "HA-ALIVE 1").Output()
	if err != nil {
		t.Fatalf("the watch failed: %v (%s)", err, out)
	}
	up, err := parseUptime(string(out))
	if err != nil {
		t.Fatal(err)
	}
	up0, _ := parseUptime(strings.Fields(string(start))[0])
	if up < up0 {
		t.Errorf("the watch printed uptime %v, before it began (%v)", up, up0)
	}
	if out, err := exec.Command("sh", "-c", waitLineScript(300*time.Millisecond), "sh", f, "NEVER").Output(); err == nil {
		t.Errorf("a watch for a line that never comes ended without error: %s", out)
	}
}
