package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/hostnet"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// TestLabUpCluster starts a 3-host lab whose cluster grows as on real
// hosts (lab2 and lab3 join lab1's one-member etcd with serve --join and
// become members), and exercises what cluster tests do to it: run
// commands, partition and heal a host, pull the founding host's power (the
// joined members keep the quorum), use the shared storage, take the lab
// down leaving nothing.
func TestLabUpCluster(t *testing.T) {
	assets := requireLab(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("FAILED: lab up needs root (bridge, TAPs) and CI runs as root")
		}
		t.Skip("SKIPPED: lab up needs root")
	}
	bin := filepath.Dir(kvmtest.Binary(t, "govisor", "github.com/govisor/govisor/cmd/govisor"))
	cache := filepath.Dir(assets.Dir)
	// Alone: its three hosts already outnumber the machine's CPUs.
	unlock, err := RunLock(assets)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	dir := filepath.Join(t.TempDir(), "lab")
	var log bytes.Buffer
	ctx := context.Background()
	t0 := time.Now()
	st, err := Up(ctx, UpConfig{Dir: dir, Hosts: 3, CPUs: 1, MemoryMB: 1024, Assets: assets,
		BinDir: bin, GuestDir: filepath.Join(cache, "guest"), Net: 9, Log: &log, Storage: true, StorageGiB: 4,
		CPUModels: []string{"EPYC", "EPYC", "EPYC,-avx2"}, Join: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	downed := false
	defer func() {
		if !downed {
			st.Down(&log)
		}
	}()
	if err := st.StartCluster(ctx, &log, 5*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("3 lab hosts with agents ready in %.1f s (%s)", time.Since(t0).Seconds(), st.Accel.Kind)
	for _, h := range st.Hosts[1:] {
		if out, err := st.Agent(h).Output(ctx, "grep", "-c", "joining the cluster as an etcd member", "/run/govisor-serve.log"); err != nil {
			t.Errorf("%s did not join as an etcd member (%v): %s", h.Name, err, out)
		}
	}

	// Each host has KVM, and the agents share one etcd: all three hosts
	// are listed from any of them.
	for _, h := range st.Hosts {
		if _, err := st.Agent(h).Output(ctx, "test", "-c", "/dev/kvm"); err != nil {
			t.Errorf("%s has no /dev/kvm: %v", h.Name, err)
		}
	}
	out, err := st.Agent(st.Hosts[2]).Output(ctx, "govisor", "host", "list", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var hl struct {
		Items []struct {
			Name        string
			CPUFeatures []string `json:"cpuFeatures"`
		}
	}
	if json.Unmarshal([]byte(out), &hl); len(hl.Items) != 3 {
		t.Errorf("host list on lab3: %s", out)
	}
	// Each agent reports its host's CPU: lab3's has no AVX2 (below).
	for _, h := range hl.Items {
		if want := h.Name != "lab3"; slices.Contains(h.CPUFeatures, "avx2") != want || !slices.Contains(h.CPUFeatures, "svm") {
			t.Errorf("%s reports CPU features %v (avx2 expected: %v)", h.Name, h.CPUFeatures, want)
		}
	}
	// Hosts can have different CPUs: lab3's lacks AVX2.
	flags := func(h HostState) string {
		out, err := st.Agent(h).Output(ctx, "grep", "-m1", "^flags", "/proc/cpuinfo")
		if err != nil {
			t.Fatalf("cpuinfo of %s: %v", h.Name, err)
		}
		return out + " "
	}
	if f1, f3 := flags(st.Hosts[0]), flags(st.Hosts[2]); !strings.Contains(f1, " avx2 ") || strings.Contains(f3, " avx2 ") || !strings.Contains(f3, " svm ") {
		t.Errorf("lab1 should have avx2 and lab3 not (both svm):\nlab1 %slab3 %s", f1, f3)
	}

	// The storage host's export is one file system on every host, and the
	// agents know it as the shared pool.
	if _, err := st.Agent(st.Hosts[0]).Output(ctx, "sh", "-c", "echo written-on-lab1 >"+SharedPath+"/probe && sync"); err != nil {
		t.Fatalf("write to the shared storage on lab1: %v", err)
	}
	for _, h := range st.Hosts[1:] {
		if out, err := st.Agent(h).Output(ctx, "cat", SharedPath+"/probe"); err != nil || out != "written-on-lab1\n" {
			t.Errorf("%s reads %q from the shared storage (%v)", h.Name, out, err)
		}
	}
	out, err = st.Agent(st.Hosts[1]).Output(ctx, "govisor", "pool", "show", SharedPool, "-o", "json")
	if err != nil || !strings.Contains(out, `"shared": true`) || !strings.Contains(out, SharedPath) {
		t.Errorf("pool %s on lab2: %s (%v)", SharedPool, out, err)
	}

	// An exit code comes back as it was.
	var b bytes.Buffer
	if code, err := st.Agent(st.Hosts[0]).Exec(ctx, ExecRequest{Args: []string{"sh", "-c", "echo hi; exit 7"}}, &b); err != nil || code != 7 || b.String() != "hi\n" {
		t.Errorf("exec: code %d, err %v, output %q", code, err, b.String())
	}

	// A partitioned host is cut off both ways, and back once healed.
	ping := func(from HostState, to string) error {
		_, err := st.Agent(from).Output(ctx, "ping", "-c", "1", "-W", "3", to)
		return err
	}
	if err := st.Partition("lab2", true); err != nil {
		t.Fatal(err)
	}
	if !st.Partitioned(st.Hosts[1]) {
		t.Error("lab2 is not reported partitioned")
	}
	if ping(st.Hosts[0], st.Hosts[1].IP) == nil {
		t.Error("lab1 reaches a partitioned lab2")
	}
	if err := st.Partition("lab2", false); err != nil {
		t.Fatal(err)
	}
	if err := ping(st.Hosts[0], st.Hosts[1].IP); err != nil {
		t.Errorf("lab1 cannot reach a healed lab2: %v", err)
	}

	// Pulling the power ends the host's QEMU at once.
	if err := st.Kill("lab1"); err != nil {
		t.Fatal(err)
	}
	if st.Hosts[0].Running() {
		t.Error("lab1 still runs after kill")
	}
	if err := st.Kill("lab1"); err == nil {
		t.Error("killing a dead host: no error")
	}
	// lab1 founded the cluster: the members that joined it keep a quorum,
	// serve on, and drop the dead host once its lease expires.
	tk := time.Now()
	for deadline := tk.Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
		out, err := st.Agent(st.Hosts[1]).Output(ctx, "govisor", "host", "list", "-o", "json")
		hl.Items = nil
		if err == nil && json.Unmarshal([]byte(out), &hl) == nil && len(hl.Items) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2 minutes after lab1's power went, lab2's host list: %s %v", out, err)
		}
	}
	if _, err := st.Agent(st.Hosts[2]).Output(ctx, "govisor", "vm", "list"); err != nil {
		t.Errorf("lab3 after lab1 died: %v", err)
	}
	t.Logf("the survivors dropped lab1 after %.1f s", time.Since(tk).Seconds())

	// Down leaves nothing behind.
	if err := st.Down(&log); err != nil {
		t.Fatal(err)
	}
	downed = true
	for _, h := range st.All() {
		if h.Running() {
			t.Errorf("%s still runs after down", h.Name)
		}
		if _, err := hostnet.Get(h.Tap); err == nil {
			t.Errorf("TAP %s left behind", h.Tap)
		}
	}
	if _, err := hostnet.Get(st.Bridge); err == nil {
		t.Errorf("bridge %s left behind", st.Bridge)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s left behind", dir)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "lab up") {
		t.Errorf("Load after down: %v", err)
	}
}
