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
	unlock, err := lab.RunLock(assets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
		if n, err := strconv.Atoi(os.Getenv("GOVISOR_LAB_CPUS")); err == nil && n > 0 {
			cfg.CPUs = n
		}
	}
	var log bytes.Buffer
	ctx := context.Background()
	t0 := time.Now()
	st, err := lab.Up(ctx, lab.UpConfig{Dir: filepath.Join(t.TempDir(), "lab"), Hosts: cfg.Hosts, CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB,
		Assets: assets, BinDir: bin, GuestDir: filepath.Join(cache, "guest"), Net: cfg.Net, Log: &log, Storage: true, StorageGiB: 4,
		HostLeaseTTL: cfg.HostLeaseTTL, CPUModels: cfg.CPUModels})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range st.Hosts {
				if h.Running() {
					lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					out, _ := st.Agent(h).Output(lctx, "tail", "-n", "40", "/run/govisor-serve.log")
					cancel()
					t.Logf("--- %s: govisor serve's log\n%s", h.Name, out)
				}
			}
		}
		st.Down(&log)
	})
	if err := st.StartCluster(ctx, &log, 5*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("%d lab hosts with agents ready in %.1f s (%s)", cfg.Hosts, time.Since(t0).Seconds(), st.Accel.Kind)
	return st
}
