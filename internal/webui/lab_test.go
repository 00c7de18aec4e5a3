package webui_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/lab"
)

// labNet is this test's lab network (bridge gvlab14, 169.254.91.0/24), apart
// from the networks of the other lab tests.
const labNet = 14

// requireLabHost returns the lab's assets and the cache folder, failing in
// CI (where the lab must work) and skipping elsewhere without one.
func requireLabHost(t *testing.T) (lab.Assets, string) {
	t.Helper()
	cache := os.Getenv("GOVISOR_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "..", ".cache")
	}
	cache, _ = filepath.Abs(cache)
	a, err := lab.FindAssets(filepath.Join(cache, "lab"))
	if err == nil {
		_, err = os.Stat(filepath.Join(cache, "guest", "bzImage"))
	}
	if err == nil && os.Geteuid() != 0 {
		err = os.ErrPermission
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FAILED: the console's VM tests need the lab (root, make lab, make guest): %v", err)
		}
		t.Skipf("SKIPPED: no lab here: %v", err)
	}
	return a, cache
}

// lockLab holds the lab's run lock (as internal/lab's tests and `lab
// testexec` do): two lab hosts side by side on 2 CPUs would both crawl.
func lockLab(t *testing.T, a lab.Assets) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(a.Dir, "run.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		t.Fatalf("lock %s: %v", f.Name(), err)
	}
	t.Cleanup(func() { f.Close() })
}

// TestBrowserLabVM drives the console in headless chromium against an
// agent in a lab host (KVM there), with a real VM: created and started
// from the form, its serial console used from the browser (a command typed
// into xterm.js and the guest's answer read back), its CPU chart rising
// while the guest is busy, paused, resumed, snapshotted, live-migrated to
// the other lab host and stopped.
func TestBrowserLabVM(t *testing.T) {
	requireNode(t)
	requireChromium(t)
	assets, cache := requireLabHost(t)
	npmCI(t)
	bin := filepath.Dir(kvmtest.Binary(t, "govisor", "github.com/govisor/govisor/cmd/govisor"))
	lockLab(t, assets)
	ctx := context.Background()
	var log bytes.Buffer
	t0 := time.Now()
	// Two lab hosts whose agents form one cluster and serve their API on
	// TCP with TLS and the lab's token (lab.StartCluster), as real hosts do.
	st, err := lab.Up(ctx, lab.UpConfig{Dir: filepath.Join(t.TempDir(), "lab"), Hosts: 2, CPUs: 1, MemoryMB: 1024,
		Assets: assets, BinDir: bin, GuestDir: filepath.Join(cache, "guest"), Net: labNet, Log: &log,
		HostLeaseTTL: 10 * time.Second}) // TCG lab hosts stall agents for seconds (as the HA tests say)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	defer func() {
		if t.Failed() {
			for _, h := range st.Hosts {
				if out, err := st.Agent(h).Output(ctx, "tail", "-n", "30", "/run/govisor-serve.log"); err == nil {
					t.Logf("%s's agent log:\n%s", h.Name, out)
				}
			}
		}
		st.Down(&log)
	}()
	if err := st.StartCluster(ctx, &log, 5*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	h := st.Hosts[0]
	url := fmt.Sprintf("https://%s:%d", h.IP, lab.AgentAPIPort)
	waitAPI(t, url, st.Token, time.Minute)
	t.Logf("lab hosts and agents ready in %.1f s (%s)", time.Since(t0).Seconds(), st.Accel.Kind)

	art := artifactDir(t)
	res := runBrowser(t, "vm.mjs", map[string]string{
		"GOVISOR_URL": url, "GOVISOR_TOKEN": st.Token, "ARTIFACTS": art, "MIGRATE_TO": st.Hosts[1].Name,
		"KERNEL": "/guest/bzImage", "INITRD": "/guest/initrd.cpio",
	})
	t.Logf("screenshots in %s; %v", art, res)
	for _, page := range []string{"vm-console", "vm-charts", "vm-paused", "vm-snapshot", "vm-migrated", "vms-stopped"} {
		if fi, err := os.Stat(filepath.Join(art, page+".png")); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s.png: %v", page, err)
		}
	}
}

// waitAPI waits until the agent at url answers GET /v1/hosts with token.
func waitAPI(t *testing.T, url, token string, limit time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var last string
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(time.Second) {
		req, _ := http.NewRequest("GET", url+"/v1/hosts", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := c.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		r.Body.Close()
		if r.StatusCode == 200 {
			return
		}
		last = r.Status
	}
	t.Fatalf("the lab agent at %s never answered: %s", url, last)
}
