package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/disklease"
	"github.com/govisor/govisor/internal/fence"
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

// TestLateDeadlineAwaitsFeed: a VMM that starts after the deadline the
// agent gave it (a slow host) runs no guest until the agent's next feed
// arms its watchdog, and without one it ends fenced, never having run it.
func TestLateDeadlineAwaitsFeed(t *testing.T) {
	saved := fenceStartWait
	fenceStartWait = time.Second
	t.Cleanup(func() { fenceStartWait = saved })
	for _, feed := range []bool{true, false} {
		t.Run(map[bool]string{true: "fed", false: "never fed"}[feed], func(t *testing.T) {
			dir := t.TempDir()
			kernel := filepath.Join(dir, "vmlinux")
			if err := os.WriteFile(kernel, []byte("not a kernel"), 0o600); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "api.sock")
			cfg := vmmconfig.Config{Kernel: kernel, Seccomp: "off", APISock: sock, FenceDeadlineMonoNS: fence.MonoNow() - 1}
			v, err := New(cfg, Options{Log: &testWriter{t}})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- v.Run(nullConsole{}) }()
			if feed {
				c := vmmapi.NewClient(sock)
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err := c.FenceUntil(ctx, fence.MonoDeadline(5*time.Second))
					cancel()
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the VMM's API took no feed: %v", err)
					}
				}
			}
			err = <-done
			ee, ok := errors.AsType[*ExitError](err)
			fenced := ok && ee.Code == ExitFenced
			switch {
			case feed && fenced:
				t.Fatalf("fed after a late start, the VMM still fenced itself: %v", err)
			case feed && err == nil:
				// It goes on to build the machine, which these files (or a
				// host without /dev/kvm) cannot make.
				t.Fatal("fed, Run = nil; want the machine's build to fail on the fake kernel")
			case !feed && !fenced:
				t.Fatalf("never fed, Run = %v; want exit status %d (fenced)", err, ExitFenced)
			}
		})
	}
}
