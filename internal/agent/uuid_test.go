package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/api"
	"github.com/govisor/govisor/internal/node"
)

// TestVMUUID: a VM created without a UUID gets one, which a definition
// replacing it without one keeps; a given UUID is kept (in lower case),
// a malformed one refused; the VMM of a firmware VM gets it, a VM whose
// kernel is booted directly does not (it reads no SMBIOS).
func TestVMUUID(t *testing.T) {
	dir := t.TempDir()
	ta := startAgent(t, dir, nil)
	ctx := context.Background()
	kernel := filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(kernel, []byte("not run"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := ta.cli.CreateVM(ctx, spec("u1", kernel, ""), false)
	if err != nil {
		t.Fatal(err)
	}
	got := v.Spec.UUID
	if len(got) != 36 {
		t.Fatalf("a new VM's UUID %q", got)
	}
	if v, res, err := ta.cli.ApplyVM(ctx, spec("u1", kernel, "")); err != nil || res != "unchanged" || v.Spec.UUID != got {
		t.Errorf("a definition without a UUID replaced it: %s %q %v", res, v.Spec.UUID, err)
	}
	s := spec("u2", kernel, "")
	s.UUID = "6BA7B810-9DAD-11D1-80B4-00C04FD430C8"
	if v, err := ta.cli.CreateVM(ctx, s, false); err != nil || v.Spec.UUID != "6ba7b810-9dad-11d1-80b4-00c04fd430c8" {
		t.Errorf("a given UUID: %q %v", v.Spec.UUID, err)
	}
	// Two VMs never share a UUID; a VM's own definition keeps its own.
	s = spec("u4", kernel, "")
	s.UUID = strings.ToUpper(got)
	if _, err := ta.cli.CreateVM(ctx, s, false); err == nil || !strings.Contains(err.Error(), "VM u1") {
		t.Errorf("a second VM with u1's UUID: %v", err)
	}
	if _, _, err := ta.cli.ApplyVM(ctx, s); err == nil || !strings.Contains(err.Error(), "VM u1") {
		t.Errorf("a definition with u1's UUID: %v", err)
	}
	if _, err := ta.cli.GetVM(ctx, "u4"); err == nil {
		t.Error("the refused VM u4 exists")
	}
	s = spec("u1", kernel, "")
	s.UUID = got
	if _, res, err := ta.cli.ApplyVM(ctx, s); err != nil || res != "unchanged" {
		t.Errorf("u1's definition with its own UUID: %s %v", res, err)
	}
	s = spec("u3", kernel, "")
	s.UUID = "6ba7b810"
	if _, err := ta.cli.CreateVM(ctx, s, false); err == nil {
		t.Error("a malformed UUID was taken")
	}
	s.UUID = got
	if c, _ := node.VMMConfig(s); c.UUID != "" {
		t.Errorf("a directly booted VM's VMM got UUID %q", c.UUID)
	}
	s.Kernel, s.Firmware = "", api.FirmwareBIOS
	if c, _ := node.VMMConfig(s); c.UUID != got {
		t.Errorf("a firmware VM's VMM got UUID %q, want %q", c.UUID, got)
	}
}
