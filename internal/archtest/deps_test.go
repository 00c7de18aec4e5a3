package archtest

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/govisor/govisor"

// goList runs `go list args...` the way the binaries are built
// (CGO_ENABLED=0) and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// within reports whether package path is pkg or one of its subpackages.
func within(path, pkg string) bool {
	return path == pkg || strings.HasPrefix(path, pkg+"/")
}

// TestOnlyStoreImportsEtcd: every etcd key and request is the store's
// (internal/cluster/store, with its test helpers below it); the rest of the
// tree uses its typed methods, so that key layout and transactions live in
// one place.
func TestOnlyStoreImportsEtcd(t *testing.T) {
	const store = module + "/internal/cluster/store"
	lines := goList(t, "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}", module+"/...")
	if len(lines) < 10 {
		t.Fatalf("go list found only %d packages: %q", len(lines), lines)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if within(f[0], store) {
			continue
		}
		for _, imp := range f[1:] {
			if within(imp, "go.etcd.io") {
				t.Errorf("%s imports %s: only %s may use etcd; give the store a typed method", f[0], imp, store)
			}
		}
	}
}

// TestAgentLinksNoVMM: the host agent's binary does not link the VMM (KVM,
// the VM, its devices); it learns the few facts it needs from leaves
// (vmlimits, hostmem), and runs VMMs as govisor processes.
func TestAgentLinksNoVMM(t *testing.T) {
	deps := goList(t, "-deps", module+"/cmd/govisor-agent")
	if !slices.Contains(deps, module+"/internal/agent") {
		t.Fatalf("govisor-agent does not link internal/agent: is go list's answer right? %q", deps)
	}
	for _, d := range deps {
		for _, vmm := range []string{"/internal/kvm", "/internal/vm", "/internal/virtio"} {
			if within(d, module+vmm) {
				t.Errorf("govisor-agent links %s (see `go list -deps ./cmd/govisor-agent`): the agent must not link the VMM", d)
			}
		}
	}
}

// TestVMMLinksNoEtcd: the govisor binary, which every VM's VMM process runs,
// links neither etcd nor the agent (their code and initialisation would
// load into every VMM; see cli.AgentBinary).
func TestVMMLinksNoEtcd(t *testing.T) {
	deps := goList(t, "-deps", module+"/cmd/govisor")
	if !slices.Contains(deps, module+"/internal/vm") {
		t.Fatalf("govisor does not link internal/vm: is go list's answer right? %q", deps)
	}
	for _, d := range deps {
		if within(d, "go.etcd.io") || within(d, module+"/internal/agent") || within(d, module+"/internal/cluster/store") {
			t.Errorf("govisor links %s (see `go list -deps ./cmd/govisor`): the VMM binary must not link etcd or the agent", d)
		}
	}
}

// TestClusterPlannersArePure: the leader's decision packages (placement,
// admission control, the CPU baseline, the balance planner), tests
// included, import only the standard library and each other: no etcd, no
// KVM, no agent, so that they test anywhere, fast, and the controllers
// feed them snapshots.
func TestClusterPlannersArePure(t *testing.T) {
	var pure []string
	for _, p := range []string{"placement", "admission", "cpubaseline", "balance"} {
		pure = append(pure, module+"/internal/cluster/"+p)
	}
	args := []string{"-deps", "-test", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}
	for _, p := range pure {
		args = append(args, p+"/...")
	}
	deps := goList(t, args...)
	if !slices.Contains(deps, pure[0]) {
		t.Fatalf("go list does not list %s: is its answer right? %q", pure[0], deps)
	}
	for _, d := range deps {
		d, _, _ = strings.Cut(d, " ") // "pkg [pkg.test]"
		d = strings.TrimSuffix(strings.TrimSuffix(d, ".test"), "_test")
		if d != "" && !slices.ContainsFunc(pure, func(p string) bool { return within(d, p) }) {
			t.Errorf("the cluster planners depend on %s (see `go list -deps -test ./internal/cluster/placement/...`): they may import only the standard library and each other", d)
		}
	}
}

// TestServicesSpeakNoHTTP: the agent's operations (package service, which
// the HTTP API, the cluster controllers and the console call alike) are
// plain Go over api types: they depend on no transport (net/http), no
// other govisor package and nothing outside the standard library, so that
// a caller needs neither HTTP nor the agent's internals to use them.
func TestServicesSpeakNoHTTP(t *testing.T) {
	const svc = module + "/internal/agent/service"
	deps := goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}{{if eq .ImportPath \"net/http\"}}net/http{{end}}", svc)
	if !slices.Contains(deps, svc) {
		t.Fatalf("go list -deps does not list %s: is its answer right? %q", svc, deps)
	}
	for _, d := range deps {
		if d != "" && d != svc && d != module+"/api" {
			t.Errorf("%s depends on %s (see `go list -deps ./internal/agent/service`): the services' contracts may use only the standard library (not net/http) and package api", svc, d)
		}
	}
}
