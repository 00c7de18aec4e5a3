package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/vm"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// TestNewErrors checks that what a config gets wrong fails in New, before
// anything starts, with exit status 2 and a message naming the field as
// the caller names it.
func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	os.WriteFile(kernel, []byte("not really a kernel"), 0o644)
	flags := func(field string) string { return "--" + field }
	tests := []struct {
		name  string
		cfg   vmmconfig.Config
		names vmmconfig.Names
		want  string
	}{
		{"invalid", vmmconfig.Config{}, nil, "kernel is required"},
		{"invalid, flag names", vmmconfig.Config{}, flags, "--kernel is required"},
		{"missing kernel", vmmconfig.Config{Kernel: filepath.Join(dir, "nope")}, nil, "kernel: open"},
		{"missing initrd", vmmconfig.Config{Kernel: kernel, Initrd: filepath.Join(dir, "nope")}, flags, "--initrd: open"},
		{"missing TLS files", vmmconfig.Config{Incoming: "127.0.0.1:0",
			TLS: &vmmconfig.TLS{Cert: "/nonexistent.crt", Key: "/nonexistent.key", CA: "/nonexistent.pem"}}, nil, "nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.cfg, Options{Names: tt.names})
			ee, ok := errors.AsType[*ExitError](err)
			if v != nil || !ok || ee.Code != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want exit status 2 with %q", v, err, tt.want)
			}
		})
	}
}

// TestMachineConfig checks what New makes of a config: the machine a boot
// builds, and the one an incoming migration starts from.
func TestMachineConfig(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("kernel bytes"), 0o644)
	os.WriteFile(initrd, []byte("initrd bytes"), 0o644)
	cfg := vmmconfig.Config{Kernel: kernel, Initrd: initrd, Cmdline: "quiet", Boot: "pvh", GuestDecompress: true,
		DebugExit: true, CPUTemplate: "host", RNG: true, Balloon: true, Vsock: &vmmconfig.Vsock{CID: 5, UDS: "v.sock"},
		Disks: []vmmconfig.Disk{{Path: "a.raw", ReadOnly: true, Direct: true, Format: "raw", Serial: "s1", Queues: 2}},
		Nets:  []vmmconfig.Net{{TAP: "tap0", MAC: "02:00:00:00:00:01"}}}
	v, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := vm.Config{CPUs: 1, MemoryMiB: vmmconfig.DefaultMemoryMiB, Kernel: []byte("kernel bytes"), Initrd: []byte("initrd bytes"),
		Cmdline: "quiet", Boot: vm.BootPVH, GuestDecompress: true, DebugExit: true, Template: "host",
		Disks: []vm.Disk{{Path: "a.raw", ReadOnly: true, Direct: true, Format: "raw", Serial: "s1", Queues: 2}},
		RNG:   true, Nets: []vm.Net{{TAP: "tap0", MAC: "02:00:00:00:00:01"}}, Vsock: &vm.Vsock{CID: 5, UDS: "v.sock"}, Balloon: true}
	if !reflect.DeepEqual(v.mcfg, want) {
		t.Errorf("machine config\n%+v\nwant\n%+v", v.mcfg, want)
	}

	// An incoming migration: the devices of this host, the vCPUs only when
	// given (then the machine is built before the migration).
	in := vmmconfig.Config{Incoming: "127.0.0.1:0", MemoryMiB: 512, RNG: true, Disks: cfg.Disks, Nets: cfg.Nets}
	v, err = New(in, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := incomingConfig(v.cfg, v.mcfg)
	if got.CPUs != 0 || got.MemoryMiB != 512 || !got.RNG || len(got.Disks) != 1 || len(got.Nets) != 1 || got.Kernel != nil {
		t.Errorf("incoming machine %+v", got)
	}
	in.CPUs = 2
	if v, err = New(in, Options{}); err != nil || incomingConfig(v.cfg, v.mcfg).CPUs != 2 {
		t.Errorf("incoming with 2 vCPUs given: %v", err)
	}
}
