// Package labtest starts a multi-host lab (package lab) for tests of the
// cluster: govisor hosts in QEMU VMs with KVM inside, their agents sharing
// one etcd, and the shared storage host. It fails (never skips) in CI when
// the lab cannot run.
package labtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/lab"
)

// Env set to 1 runs the cluster lab tests outside CI.
const Env = "GOVISOR_CLUSTER_TESTS"

// Config is the lab a test wants.
type Config struct {
	Hosts int
	Net   int // the lab network: one per test package, so that leftovers never collide
	// MemoryMB per lab host (default 1024).
	MemoryMB int
	// HostLeaseTTL is the agents' --host-lease-ttl (0: their default).
	HostLeaseTTL time.Duration
	// CPUs is each lab host's vCPUs (0: GOVISOR_LAB_CPUS, else 1).
	CPUs int
	// CPUModels are the lab hosts' QEMU CPU models (lab.UpConfig.CPUModels).
	CPUModels []string
}

// Up starts the lab with its agents and shared pool, and takes it down
// when the test ends. It holds the machine's lab lock for the test.
func Up(t *testing.T, cfg Config) *lab.State {
	t.Helper()
	l := start(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs(t)
		}
		l.down()
	})
	return l.st
}

// running is a lab up for tests, with the lock it holds.
type running struct {
	st     *lab.State
	unlock func()
	log    bytes.Buffer
}

// start brings a lab up with its cluster, or ends the test (skipped
// outside CI and make test, failed in CI when the lab cannot run).
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	if os.Getenv("CI") != "true" && os.Getenv(Env) != "1" {
		// Each brings up a 4-VM lab for minutes: not in a plain `go test
		// ./...` beside other work. make test sets Env; CI always runs them.
		t.Skipf("SKIPPED: cluster lab tests run in CI, in make test, or with %s=1", Env)
	}
	cache := os.Getenv("GOVISOR_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "..", "..", ".cache")
	}
	assets, err := lab.FindAssets(filepath.Join(cache, "lab"))
	if err != nil || os.Geteuid() != 0 {
		if err == nil {
			err = os.ErrPermission
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("FAILED: a cluster test needs the lab (as root) in CI: %v", err)
		}
		t.Skipf("SKIPPED: no lab here (as root): %v", err)
	}
	bin := filepath.Dir(kvmtest.Binary(t, "govisor", "github.com/govisor/govisor/cmd/govisor"))
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
		if n, err := strconv.Atoi(os.Getenv("GOVISOR_LAB_CPUS")); err == nil && n > 0 {
			cfg.CPUs = n
		}
	}
	dir, err := os.MkdirTemp("", "govisor-labtest-")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := lab.RunLock(assets)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	l := &running{unlock: func() { unlock(); os.RemoveAll(dir) }}
	ctx := context.Background()
	t0 := time.Now()
	l.st, err = lab.Up(ctx, lab.UpConfig{Dir: filepath.Join(dir, "lab"), Hosts: cfg.Hosts, CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB,
		Assets: assets, BinDir: bin, GuestDir: filepath.Join(cache, "guest"), Net: cfg.Net, Log: &l.log, Storage: true, StorageGiB: 4,
		HostLeaseTTL: cfg.HostLeaseTTL, CPUModels: cfg.CPUModels})
	if err != nil {
		l.unlock()
		t.Fatalf("%v\n%s", err, l.log.String())
	}
	if err := l.st.StartCluster(ctx, &l.log, 5*time.Minute); err != nil {
		l.down()
		t.Fatalf("%v\n%s", err, l.log.String())
	}
	t.Logf("%d lab hosts with agents ready in %.1f s (%s)", cfg.Hosts, time.Since(t0).Seconds(), l.st.Accel.Kind)
	return l
}

// dumpLogs logs the end of every live host's govisor serve log: what a
// failed test's agents did.
func (l *running) dumpLogs(t *testing.T) {
	for _, h := range l.st.Hosts {
		if h.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, _ := l.st.Agent(h).Output(ctx, "tail", "-n", "40", "/run/govisor-serve.log")
			cancel()
			t.Logf("--- %s: govisor serve's log\n%s", h.Name, out)
		}
	}
}

// down takes the lab down and releases the lock.
func (l *running) down() {
	l.st.Down(&l.log)
	l.unlock()
}

// Shared is one lab that a package's tests take in turn, so that they do
// not each pay for a lab's start (about 40 s of a TCG machine). A test
// that passes hands it on as it left it (it removes its own VMs); one that
// fails, or Spends it (it killed a host), has it taken down when it ends,
// and the next test gets a fresh one. Close it in TestMain.
type Shared struct {
	Config Config
	l      *running
}

// Take returns the shared lab, starting it when there is none.
func (s *Shared) Take(t *testing.T) *lab.State {
	t.Helper()
	if s.l == nil {
		s.l = start(t, s.Config)
	} else {
		t.Logf("the package's lab again (%d hosts, %s)", len(s.l.st.Hosts), s.l.st.Accel.Kind)
	}
	l := s.l
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs(t)
			s.drop(l)
		}
	})
	return l.st
}

// Spend says the test leaves the lab unfit for the next one (a host
// killed): it is taken down when the test ends.
func (s *Shared) Spend(t *testing.T) {
	l := s.l
	t.Cleanup(func() { s.drop(l) })
}

// drop takes lab l down unless that happened already.
func (s *Shared) drop(l *running) {
	if s.l == l && l != nil {
		s.l = nil
		l.down()
	}
}

// Close takes the lab down, if one is up.
func (s *Shared) Close() { s.drop(s.l) }
