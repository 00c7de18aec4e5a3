package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/hostnet/hostnettest"
)

// cliCase is one govisor invocation: its exit code and what its output holds.
type cliCase struct {
	args []string
	code int
	out  string // in stdout (code 0) or stderr
}

func runCases(t *testing.T, sock string, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		out, errOut, code := runGovisor(t, append(tc.args, "--socket", sock)...)
		got := out
		if tc.code != 0 {
			got = errOut
		}
		if code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("govisor %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.code, tc.out, out, errOut)
		}
	}
}

// TestPoolAndVolumeCommands drives `govisor pool` and `govisor volume`
// against a `govisor serve`: create, import, convert, list, delete, and
// the exit codes of refusals.
func TestPoolAndVolumeCommands(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	startServe(t, filepath.Join(dir, "state"), sock)
	poolDir := filepath.Join(dir, "images")
	src := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	runCases(t, sock, []cliCase{
		{[]string{"pool", "create", "local", "--path", poolDir}, 0, "storage pool local created (dir " + poolDir + ")"},
		{[]string{"pool", "create", "local", "--path", poolDir}, 4, "already exists"},
		{[]string{"pool", "create", "nfs", "--shared", "--path", filepath.Join(dir, "unmounted")}, 2, "no such directory"},
		{[]string{"pool", "list"}, 0, "local"},
		{[]string{"volume", "create", "local/data.qcow2", "--size", "16M"}, 0, "qcow2"},
		{[]string{"volume", "create", "local/root.vmdk", "--from", src, "--format", "vmdk"}, 0, "vmdk"},
		{[]string{"volume", "convert", "local/root.vmdk", "root.raw", "--format", "raw"}, 0, "raw"},
		{[]string{"volume", "convert", "local/root.vmdk", "root.vhd"}, 2, "--format is required"},
		{[]string{"volume", "create", "local/data.qcow2", "--size", "1M"}, 4, "already exists"},
		{[]string{"volume", "create", "nopool", "--size", "1M"}, 2, "POOL/VOLUME"},
		{[]string{"volume", "create", "ghost/x", "--size", "1M"}, 3, "no storage pool ghost"},
		{[]string{"volume", "create", "local/x"}, 2, "exactly one"},
		{[]string{"volume", "show", "local/root.raw"}, 0, "1.0 MiB"},
		{[]string{"volume", "delete", "local/ghost"}, 3, "no volume ghost"},
	})
	out, errOut, code := runGovisor(t, "volume", "list", "local", "-o", "json", "--socket", sock)
	var l api.VolumeList
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Items) != 3 {
		t.Fatalf("volume list: exit %d %s %s", code, out, errOut)
	}
	for _, v := range l.Items {
		want := map[string]string{"data.qcow2": "qcow2", "root.raw": "raw", "root.vmdk": "vmdk"}[v.Name]
		if v.Format != want {
			t.Errorf("volume %s has format %q, want %q", v.Name, v.Format, want)
		}
	}
	runCases(t, sock, []cliCase{
		{[]string{"volume", "delete", "local/root.raw"}, 0, "volume local/root.raw deleted"},
		{[]string{"pool", "delete", "local"}, 0, "deleted (its files stay)"},
		{[]string{"pool", "show", "local"}, 3, "no storage pool local"},
	})
	if _, err := os.Stat(filepath.Join(poolDir, "data.qcow2")); err != nil {
		t.Errorf("pool delete removed its files: %v", err)
	}
}

// TestNetCommands drives `govisor net` against a `govisor serve` running in
// a network namespace the test makes.
func TestNetCommands(t *testing.T) {
	if !hostnettest.Enter(t) {
		return
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	startServe(t, filepath.Join(dir, "state"), sock)
	runCases(t, sock, []cliCase{
		{[]string{"net", "create", "lan", "--cidr", "169.254.77.1/16"}, 0, "network lan created (bridge gv-lan)"},
		{[]string{"net", "create", "lan"}, 4, "already exists"},
		{[]string{"net", "create", "bad", "--cidr", "10.0.0.1"}, 2, "cidr"},
		{[]string{"net", "list"}, 0, "169.254.77.1/16"},
		{[]string{"net", "show", "ghost"}, 3, "no network ghost"},
	})
	out, _, code := runGovisor(t, "net", "show", "lan", "-o", "json", "--socket", sock)
	var n api.Network
	if code != 0 || json.Unmarshal([]byte(out), &n) != nil || n.Bridge != "gv-lan" || n.Kind != "bridge" {
		t.Fatalf("net show: exit %d %s", code, out)
	}
	runCases(t, sock, []cliCase{
		{[]string{"net", "delete", "lan"}, 0, "network lan deleted"},
		{[]string{"net", "delete", "lan"}, 3, "no network lan"},
	})
}
