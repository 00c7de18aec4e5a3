package agent

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/client"
	"github.com/govisor/govisor/internal/apitoken"
	"github.com/govisor/govisor/internal/audit"
)

// tcpAgent runs an agent serving on its socket and on TLS with the token
// file tokens; clientOf makes a client of the TCP API with a token.
func tcpAgent(t *testing.T, tokens string, mod func(*Config)) (ta testAgent, tokFile string, clientOf func(string) *client.Client) {
	t.Helper()
	dir := t.TempDir()
	cr := writeCreds(t, dir, tokens)
	ta = startAgent(t, filepath.Join(dir, "state"), func(c *Config) {
		cr.serve(c)
		if mod != nil {
			mod(c)
		}
	})
	return ta, cr.tokens, func(tok string) *client.Client { return cr.client(t, ta, tok) }
}

// change is a request that changes something, as the audit log should
// hold it.
type change struct {
	who, method, path string
	status            int
}

// TestRolesAndAudit checks the roles of issue 15 on the TCP API (a viewer
// token cannot stop a VM, an operator cannot touch pools, networks,
// settings or the audit log, an admin can) and that the audit log holds
// every change the test made, refused ones included, with who made it.
func TestRolesAndAudit(t *testing.T) {
	ctx := context.Background()
	ta, tokFile, clientOf := tcpAgent(t, "# tokens\nadm-secret\nop-secret role=operator name=ops\nro-secret role=viewer name=alice\n", nil)
	defer ta.Close()
	admin, op, viewer := clientOf("adm-secret"), clientOf("op-secret"), clientOf("ro-secret")
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(kernel, []byte("not booted in this test"), 0o644)
	admName := apitoken.DefaultName("adm-secret")
	var want []change
	expect := func(who, method, path string, status int, err error) {
		t.Helper()
		var ce *client.Error
		got := http.StatusOK
		if errors.As(err, &ce) {
			got = ce.StatusCode
		} else if err != nil {
			t.Fatalf("%s %s %s: %v", who, method, path, err)
		}
		if (status < 300) != (got < 300) || (status >= 300 && got != status) {
			t.Fatalf("%s %s %s: status %d (%v), want %d", who, method, path, got, err, status)
		}
		if status == http.StatusForbidden && !strings.Contains(err.Error(), "role") {
			t.Errorf("403 without a clear message: %v", err)
		}
		want = append(want, change{who, method, path, status})
	}

	_, err := admin.CreateVM(ctx, spec("web", kernel, ""), false)
	expect(admName, "POST", "/v1/vms", http.StatusCreated, err)
	_, err = ta.cli.CreateVM(ctx, spec("db", kernel, ""), false) // the Unix socket: local, an admin
	expect("local", "POST", "/v1/vms", http.StatusCreated, err)

	// A viewer reads, and nothing else: it cannot stop a VM.
	if vms, err := viewer.ListVMs(ctx); err != nil || len(vms) != 2 {
		t.Fatalf("viewer lists: %v %v", vms, err)
	}
	_, err = viewer.Action(ctx, "web", "stop", 0)
	expect("alice", "POST", "/v1/vms/web/stop", http.StatusForbidden, err)
	err = viewer.DeleteVM(ctx, "web")
	expect("alice", "DELETE", "/v1/vms/web", http.StatusForbidden, err)
	if _, err := viewer.Audit(ctx, client.AuditQuery{}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("viewer reads the audit log: %v", err)
	}
	if _, err := viewer.Do(ctx, "GET", "/v1/vms/web/console", nil, nil); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("viewer opens the console: %v", err)
	}

	// An operator runs VMs but not the infrastructure.
	_, err = op.Action(ctx, "web", "stop", 0)
	expect("ops", "POST", "/v1/vms/web/stop", http.StatusAccepted, err)
	err = op.DeleteVM(ctx, "db")
	expect("ops", "DELETE", "/v1/vms/db", http.StatusNoContent, err)
	_, err = op.CreatePool(ctx, api.Pool{Name: "p", Path: t.TempDir()})
	expect("ops", "POST", "/v1/pools", http.StatusForbidden, err)
	_, err = op.CreateNetwork(ctx, api.Network{Name: "n"})
	expect("ops", "POST", "/v1/networks", http.StatusForbidden, err)
	_, err = op.PutSettings(ctx, api.ClusterSettings{})
	expect("ops", "PUT", "/v1/cluster/settings", http.StatusForbidden, err)
	if _, err := op.Audit(ctx, client.AuditQuery{}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("operator reads the audit log: %v", err)
	}
	_, err = admin.CreatePool(ctx, api.Pool{Name: "p", Path: t.TempDir()})
	expect(admName, "POST", "/v1/pools", http.StatusCreated, err)

	// A token added to the file while the agent runs (govisor token
	// create) works without a restart.
	sec := apitoken.NewSecret()
	if err := apitoken.Append(tokFile, apitoken.Token{Secret: sec, Identity: apitoken.Identity{Name: "late", Role: apitoken.Viewer}}); err != nil {
		t.Fatal(err)
	}
	late := clientOf(sec)
	deadline := time.Now().Add(5 * time.Second)
	for _, err := late.ListVMs(ctx); err != nil; _, err = late.ListVMs(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("new token: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = late.Action(ctx, "web", "start", 0)
	expect("late", "POST", "/v1/vms/web/start", http.StatusForbidden, err)

	// A body over the limit is refused with 413, before any decoding.
	_, err = admin.Do(ctx, "POST", "/v1/vms", strings.NewReader(`{"name":"`+strings.Repeat("x", 2<<20)+`"}`), nil)
	if !errors.Is(err, client.ErrTooLarge) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("2 MiB body: %v, want a clear 413", err)
	}
	want = append(want, change{admName, "POST", "/v1/vms", http.StatusRequestEntityTooLarge})

	log, err := admin.Audit(ctx, client.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []change
	for _, r := range log.Items {
		got = append(got, change{r.Who, r.Method, r.Path, r.Status})
		if r.Time.IsZero() || r.Role == "" {
			t.Errorf("record without time or role: %+v", r)
		}
	}
	if len(got) != len(want) {
		t.Errorf("audit log holds %d changes, the test made %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("audit record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if l, err := admin.Audit(ctx, client.AuditQuery{Who: "alice"}); err != nil || len(l.Items) != 2 || l.Items[0].Target != "vms/web" {
		t.Errorf("alice's records: %+v %v", l, err)
	}
	// The log is JSON lines in the state directory, 0600.
	if st, err := os.Stat(filepath.Join(ta.cfg.StateDir, audit.FileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("audit file: %v %v", st, err)
	}
}

// TestRateLimit checks a token sending too fast gets 429 with
// Retry-After, while another token and the Unix socket go on.
func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	ta, _, clientOf := tcpAgent(t, "fast\nslow role=viewer name=slow\n", func(c *Config) { c.RateLimit, c.RateBurst = 1, 5 })
	defer ta.Close()
	fast, slow := clientOf("fast"), clientOf("slow")
	var err error
	for range 20 {
		if _, err = fast.ListVMs(ctx); err != nil {
			break
		}
	}
	var ce *client.Error
	if !errors.Is(err, client.ErrRateLimited) || !errors.As(err, &ce) || ce.RetryAfter < time.Second {
		t.Fatalf("20 requests at once with a burst of 5: %v, want 429 with Retry-After", err)
	}
	if _, err := slow.ListVMs(ctx); err != nil {
		t.Errorf("another token: %v", err)
	}
	for range 20 {
		if _, err := ta.cli.ListVMs(ctx); err != nil {
			t.Fatalf("the socket: %v", err)
		}
	}
	time.Sleep(ce.RetryAfter)
	if _, err := fast.ListVMs(ctx); err != nil {
		t.Errorf("after Retry-After: %v", err)
	}
}
