package webui_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/lab"
	"github.com/govisor/govisor/internal/lab/labtest"
)

// labNet is this test's lab network (bridge gvlab14, 169.254.91.0/24), apart
// from the networks of the other lab tests.
const labNet = 14

// TestBrowserLabVM drives the console in headless chromium against an
// agent in a lab host (KVM there), with a real VM: created and started
// from the form, its serial console used from the browser (a command typed
// into xterm.js and the guest's answer read back), its CPU chart rising
// while the guest is busy, paused, resumed, snapshotted, live-migrated to
// the other lab host (its progress bar seen while it runs; the console
// answering again afterwards, through the first host's agent) and stopped.
func TestBrowserLabVM(t *testing.T) {
	requireNode(t)
	requireChromium(t)
	npmCI(t)
	t0 := time.Now()
	// Two lab hosts whose agents form one cluster and serve their API on
	// TCP with TLS and the lab's token, as real hosts do (skipped outside
	// CI and make test, as every cluster lab test).
	st := labtest.Up(t, labtest.Config{Hosts: 2, Net: labNet,
		HostLeaseTTL: 10 * time.Second}) // TCG lab hosts stall agents for seconds (as the HA tests say)
	h := st.Hosts[0]
	url := fmt.Sprintf("https://%s:%d", h.IP, lab.AgentAPIPort)
	waitAPI(t, url, st.Token, time.Minute)
	t.Logf("lab ready in %.1f s", time.Since(t0).Seconds())

	art := artifactDir(t)
	res := runBrowser(t, "vm.mjs", map[string]string{
		"GOVISOR_URL": url, "GOVISOR_TOKEN": st.Token, "ARTIFACTS": art, "MIGRATE_TO": st.Hosts[1].Name,
		"KERNEL": "/guest/bzImage", "INITRD": "/guest/initrd.cpio",
	})
	t.Logf("screenshots in %s; %v", art, res)
	for _, page := range []string{"vm-console", "vm-charts", "vm-paused", "vm-snapshot", "vm-migrated", "vm-console-migrated", "vms-stopped"} {
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
