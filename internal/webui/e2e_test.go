package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/agent"
	"github.com/govisor/govisor/internal/testpki"
)

// chromiumPath is Debian's chromium (scripts/deps.sh test); the tests
// never download a browser.
const chromiumPath = "/usr/bin/chromium"

// e2eToken is the API token of the test agents.
const e2eToken = "e2e-token-0123456789"

// localAgent is an agent of this process on a Unix socket and on TLS
// loopback with a token, whose VMMs are /bin/false (no KVM needed: a
// started VM fails at once, which the console shows).
type localAgent struct {
	*agent.Agent
	url string // https://127.0.0.1:PORT
	cli *client.Client
}

func startLocalAgent(t *testing.T, host string, ttl time.Duration) localAgent {
	t.Helper()
	dir := t.TempDir()
	cert, key := testpki.WriteSelfSigned(t, dir)
	tokens := filepath.Join(dir, "tokens")
	os.WriteFile(tokens, []byte("# e2e\n"+e2eToken+"\n"), 0o600)
	cfg := agent.Config{
		StateDir: filepath.Join(dir, "state"), Socket: filepath.Join(dir, "api.sock"), HostName: host,
		Listen: "127.0.0.1:0", TLSCert: cert, TLSKey: key, TokenFile: tokens, SessionTTL: ttl,
		Executable: "/bin/false", StopTimeout: time.Second, ResyncEvery: 250 * time.Millisecond,
		UsageEvery: time.Second,
	}
	a, err := agent.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	la := localAgent{Agent: a}
	for _, ad := range a.Addrs() {
		if hp, ok := strings.CutPrefix(ad, "tcp:"); ok {
			la.url = "https://" + hp
		}
	}
	if la.url == "" {
		t.Fatalf("no TCP listener among %v", a.Addrs())
	}
	if la.cli, err = client.New(client.Options{Socket: cfg.Socket}); err != nil {
		t.Fatal(err)
	}
	return la
}

// artifactDir is where the end-to-end tests leave their screenshots:
// $GOVISOR_E2E_ARTIFACTS, else $GOVISOR_CACHE/artifacts/webui, else a
// folder in the system's temporary directory. It is emptied first.
func artifactDir(t *testing.T) string {
	d := os.Getenv("GOVISOR_E2E_ARTIFACTS")
	if d == "" {
		if c := os.Getenv("GOVISOR_CACHE"); c != "" {
			d = filepath.Join(c, "artifacts", "webui")
		} else {
			d = filepath.Join(os.TempDir(), "govisor-artifacts", "webui")
		}
	}
	os.RemoveAll(d)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// requireChromium returns chromiumPath, failing in CI when it is missing.
func requireChromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FAILED: the browser tests need Debian's chromium (scripts/deps.sh test): %v", err)
		}
		t.Skipf("SKIPPED: no %s", chromiumPath)
	}
	return chromiumPath
}

// runBrowser runs the script web/e2e/SCRIPT (playwright-core driving
// headless chromium) with env and returns its results.
func runBrowser(t *testing.T, script string, env map[string]string) map[string]any {
	t.Helper()
	node := requireNode(t)
	npmCI(t)
	cmd := exec.Command(node, filepath.Join(webDir, "e2e", script))
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(), "CHROMIUM="+requireChromium(t))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("browser:\n%s", out)
	if err != nil {
		t.Fatalf("the browser test failed: %v", err)
	}
	var res map[string]any
	for _, l := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(l, "RESULT "); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				t.Fatalf("result line %q: %v", j, err)
			}
		}
	}
	if res == nil {
		t.Fatal("the browser test printed no RESULT line")
	}
	return res
}

// TestBrowserLocalAgent drives the console in headless chromium against
// agents of this process (no KVM): a wrong token and an expired session
// are refused, a VM is created from the form (its field errors shown next
// to the fields), listed, filtered, sorted and started, another deleted,
// a list of 1,000 VMs drawn and filtered (timed), the overview shows
// hosts, states and live events, the networks and pools pages list what
// the API has, and a request without the CSRF token is refused. Every
// page's screenshot is left in artifactDir.
func TestBrowserLocalAgent(t *testing.T) {
	requireNode(t)
	requireChromium(t)
	a := startLocalAgent(t, "e2ehost", time.Hour)
	short := startLocalAgent(t, "shorthost", 3*time.Second)
	ctx := t.Context()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("not really a kernel: the VMM is /bin/false"), 0o644)
	for _, n := range []string{"alpha", "zeta"} {
		if _, err := a.cli.CreateVM(ctx, api.VMSpec{Name: n, Kernel: kernel, Memory: "128M", RestartPolicy: "never"}, false); err != nil {
			t.Fatal(err)
		}
	}
	pool := filepath.Join(dir, "pool")
	os.Mkdir(pool, 0o755)
	if _, err := a.cli.CreatePool(ctx, api.Pool{Name: "e2e-pool", Path: pool}); err != nil {
		t.Fatal(err)
	}
	// A raw image to import (and convert to qcow2) from the storage page.
	image := filepath.Join(dir, "image.raw")
	if err := os.WriteFile(image, bytes.Repeat([]byte("govisor!"), 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	art := artifactDir(t)
	res := runBrowser(t, "run.mjs", map[string]string{
		"GOVISOR_URL": a.url, "GOVISOR_SHORT_URL": short.url, "GOVISOR_TOKEN": e2eToken,
		"KERNEL": kernel, "ARTIFACTS": art, "SHORT_TTL_MS": "3000", "POOL": "e2e-pool", "IMAGE": image, "POOL2_DIR": filepath.Join(dir, "pool2"),
	})
	t.Logf("screenshots in %s; timings %v", art, res)
	for _, page := range []string{"login-wrong-token", "overview", "create-errors", "vm-detail", "vms", "vms-sorted", "networks", "pools", "session-expired",
		"overview-alarms", "host", "events", "pool", "vm-disks", "reports", "cluster", "cluster-maintenance", "events-cluster", "login-rate-limited"} {
		if fi, err := os.Stat(filepath.Join(art, page+".png")); err != nil || fi.Size() < 1000 {
			t.Errorf("screenshot %s.png: %v", page, err)
		}
	}
	// What the browser did went through the API for real.
	v, err := a.cli.GetVM(ctx, "e2e-vm1")
	if err != nil {
		t.Fatalf("the VM created in the browser: %v", err)
	}
	// Started from the list, its VMM (/bin/false) failed, and the restart
	// policy "never" chosen in the form left it so.
	if v.Spec.CPUs != 2 || v.Spec.Memory != "128M" || v.Spec.RestartPolicy != "never" || !v.Spec.HA || v.Spec.RestartPriority != "high" || v.Status.State != api.StateFailed || v.Status.ExitReason != "exit status 1" {
		t.Errorf("the VM created and started in the browser: %+v", v)
	}
	if _, err := a.cli.GetVM(ctx, "Bad_Name"); err == nil {
		t.Errorf("the refused VM exists")
	}
	if _, err := a.cli.GetVM(ctx, "alpha"); err == nil {
		t.Errorf("the VM deleted in the browser still exists")
	}
	checkPagesDone(t, a, res)

	// The list with 1,000 VMs (issue 14: it stays fast).
	const many = 1000
	t0 := time.Now()
	sem := make(chan struct{}, 8)
	errs := make(chan error, many)
	for i := range many {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			_, err := a.cli.CreateVM(ctx, api.VMSpec{Name: fmt.Sprintf("many-%04d", i), Kernel: kernel, Memory: "64M"}, false)
			errs <- err
		}()
	}
	for range many {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d VMs created in %.1f s", many, time.Since(t0).Seconds())
	res = runBrowser(t, "many.mjs", map[string]string{
		"GOVISOR_URL": a.url, "GOVISOR_TOKEN": e2eToken, "ARTIFACTS": art, "WANT_VMS": fmt.Sprint(many + 2),
	})
	t.Logf("VM list of %d VMs: %v", many+2, res)
	// The bulk actions of many.mjs: ten VMs started (their VMM, /bin/false,
	// fails at once), ten others deleted.
	vms, err := a.cli.ListVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	started, left := 0, 0
	for _, v := range vms {
		if strings.HasPrefix(v.Spec.Name, "many-001") {
			t.Errorf("%s was deleted in bulk but is still there", v.Spec.Name)
		}
		if strings.HasPrefix(v.Spec.Name, "many-000") && v.Desired == api.PowerRunning {
			started++
		}
		if strings.HasPrefix(v.Spec.Name, "many-") {
			left++
		}
	}
	if started != 10 || left != many-10 {
		t.Errorf("after the bulk actions: %d of many-000x desired running (want 10), %d many-* VMs (want %d)", started, left, many-10)
	}
}
