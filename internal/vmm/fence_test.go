package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
	"github.com/govisor/govisor/internal/vmmapi"
)

// nullConsole is a console nobody types into.
type nullConsole struct{}

func (nullConsole) Write(p []byte) (int, error) { return len(p), nil }
func (nullConsole) Flush()                      {}
func (nullConsole) Input() <-chan []byte        { return nil }
func (nullConsole) Quit() <-chan struct{}       { return nil }

// TestFedWhileLeasesWait: an HA restart's VMM waits out a dead holder's
// disk lease with its fence watchdog armed for less than that wait. The
// API must answer from the start, so the agent can keep feeding it, and
// the VMM must not fence itself before its guest ever ran (which, on the
// lab's slow hosts, sent HA restarts into a fence-restart loop).
func TestFedWhileLeasesWait(t *testing.T) {
	saved := leaseOptions
	leaseOptions = disklease.Options{Renew: 200 * time.Millisecond, FenceAfter: 600 * time.Millisecond, Expire: 2 * time.Second}
	t.Cleanup(func() { leaseOptions = saved })

	dir := t.TempDir()
	disk := filepath.Join(dir, "ha.raw")
	kernel := filepath.Join(dir, "vmlinux")
	for _, p := range []string{disk, kernel} {
		if err := os.WriteFile(p, []byte("not a kernel, not a file system"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A holder on another host that died: its record names it, unreleased,
	// and is never written again.
	dead, err := disklease.Acquire(context.Background(), disk, disklease.Owner{Host: "lab1", VM: "ha"}, leaseOptions)
	if err != nil {
		t.Fatal(err)
	}
	held, err := os.ReadFile(disklease.Path(disk))
	if err != nil {
		t.Fatal(err)
	}
	dead.Release(context.Background())
	if err := os.WriteFile(disklease.Path(disk), held, 0o600); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "api.sock")
	cfg := vmmconfig.Config{Kernel: kernel, Seccomp: "off", APISock: sock, FenceTTLMS: 800,
		LeaseOwner: "lab3/ha", Disks: []vmmconfig.Disk{{Path: disk, Format: "raw", Lease: true}}}
	v, err := New(cfg, Options{Log: &testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- v.Run(nullConsole{}) }()

	// Feed as the agent does, every 200 ms, until Run ends: the lease wait
	// (2 s of expiry plus the claim's settling) is more than twice the
	// watchdog's 800 ms.
	c := vmmapi.NewClient(sock)
	fed := 0
	var runErr error
	for tick := time.NewTicker(200 * time.Millisecond); runErr == nil; {
		select {
		case runErr = <-done:
			if runErr == nil {
				runErr = errors.New("<nil>")
			}
			continue
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if _, err := c.Fence(ctx, 800*time.Millisecond); err == nil {
			fed++
		}
		cancel()
	}
	waited := time.Since(began)
	if waited < leaseOptions.Expire {
		t.Fatalf("Run ended after %v, before the dead holder's lease expired (%v): %v", waited, leaseOptions.Expire, runErr)
	}
	if ee, ok := errors.AsType[*ExitError](runErr); ok && ee.Code == ExitFenced {
		t.Fatalf("the VMM fenced itself while it waited for the disk lease (fed %d times): %v", fed, runErr)
	}
	if fed < 5 {
		t.Errorf("the API answered %d feeds during a %v lease wait, want one every 200 ms", fed, waited.Round(time.Millisecond))
	}
	// The lease was taken for this VMM (and given up as it ended: no
	// machine could be built from these files).
	r, err := disklease.Inspect(disk)
	if err != nil || r.Owner != (disklease.Owner{Host: "lab3", VM: "ha"}) {
		t.Errorf("the disk lease after Run: %+v %v, want taken by lab3/ha", r, err)
	}
}

// testWriter logs a VMM's messages through t.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) { w.t.Logf("vmm: %s", p); return len(p), nil }
