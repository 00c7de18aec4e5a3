package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchConsoleKernelChatterIsNoHeartbeat: a lab host whose /init
// fell silent is reported even though its kernel keeps printing (a lab
// host frozen in a soft lockup warns every ~30 s, which once kept a
// package's run waiting with no report).
func TestWatchConsoleKernelChatterIsNoHeartbeat(t *testing.T) {
	console := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(console, []byte("LAB-INIT uptime=1\nLAB-HEART"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Host{Console: console, done: make(chan struct{})}
	defer close(h.done)
	stuck := watchConsole(h, 3*time.Second)
	f, err := os.OpenFile(console, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The heartbeat split across two reads still counts; the kernel's
	// warnings after it do not.
	f.WriteString("BEAT uptime=5\n")
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(time.Minute)
	for {
		select {
		case why := <-stuck:
			if !strings.Contains(why, "no heartbeat") {
				t.Fatalf("report %q", why)
			}
			return
		case <-tick.C:
			f.WriteString("[  185.49] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [vm.test:194]\n")
		case <-limit:
			t.Fatal("a lab host printing only kernel warnings was not reported")
		}
	}
}
