package jail

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

func TestIDs(t *testing.T) {
	u1, g1 := IDs("a.vm1")
	u2, _ := IDs("a.vm1")
	u3, _ := IDs("a.vm2")
	if u1 != u2 || u1 != g1 || u1 == u3 || u1 < uidBase || u1 >= uidBase+uidSpan {
		t.Fatalf("IDs: %d %d %d %d", u1, g1, u2, u3)
	}
	// Another host's agent gives the same VM the same uid (shared storage).
	if u4, _ := IDs("otheragent.vm1"); u4 != u1 {
		t.Errorf("vm1's uid differs between agents: %d, %d", u1, u4)
	}
}

func TestForVMM(t *testing.T) {
	host := t.TempDir()
	devUserfaultfd, pvmModule = filepath.Join(host, "nouffd"), filepath.Join(host, "nopvm")
	vmDir := filepath.Join(host, "vms", "a")
	cfg := vmmconfig.Config{
		Kernel: "kernel", Initrd: filepath.Join(host, "initrd"), APISock: "api.sock", ConsoleSock: filepath.Join(vmDir, "console.sock"),
		Disks: []vmmconfig.Disk{{Path: "/pool/a.qcow2"}, {Path: "/pool/iso.raw", ReadOnly: true}, {Path: filepath.Join(vmDir, "scratch.raw")}},
		Nets:  []vmmconfig.Net{{TAP: "tap0"}},
		Jail:  &vmmconfig.Jail{ID: "agent.a", Dir: vmDir},
	}
	s, out, err := ForVMM(cfg, vmDir, []string{"/pool/snapdisk.raw"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Jail != nil || out.Kernel != filepath.Join(vmDir, "kernel") || out.APISock != "api.sock" || s.Cwd != vmDir {
		t.Errorf("config %+v, cwd %s: kernel absolute, sockets relative to the same working directory", out, s.Cwd)
	}
	if uid, _ := IDs("agent.a"); s.UID != uid || s.GID != uid {
		t.Errorf("uid %d gid %d", s.UID, s.GID)
	}
	want := []Bind{{Path: cfg.Initrd, ReadOnly: true}, {Path: "/pool/a.qcow2"}, {Path: "/pool/iso.raw", ReadOnly: true}, {Path: "/pool/snapdisk.raw"}}
	if !slices.Equal(s.Files, want) {
		t.Errorf("binds %+v, want %+v (the kernel and scratch disk are in the VM's folder)", s.Files, want)
	}
	if want := []string{"/pool/a.qcow2", filepath.Join(vmDir, "scratch.raw"), "/pool/snapdisk.raw"}; !slices.Equal(s.Chown, want) {
		t.Errorf("given to the jail: %v, want %v (the disks the guest writes)", s.Chown, want)
	}
	if !slices.Equal(s.Devices, []string{devKVM, devTUN}) || len(s.Empty) != 0 {
		t.Errorf("devices %v, empty %v", s.Devices, s.Empty)
	}

	// A working directory outside the VM's folder: relative sockets
	// become absolute (they are found in the VM's folder).
	cfg.APISock = "api.sock"
	cfg.Jail.Dir = filepath.Join(host, "vms")
	_, out, err = ForVMM(cfg, filepath.Join(host, "vms", "a"), nil)
	if err != nil || out.APISock != "api.sock" {
		t.Errorf("cwd below the folder: %v, %q", err, out.APISock)
	}
	if _, _, err := ForVMM(cfg, host, nil); err == nil || !strings.Contains(err.Error(), "outside the VM's folder") {
		t.Errorf("a socket outside the VM's folder: %v", err)
	}

	// Restoring: the snapshot's folder and files are given to the jail.
	snap := filepath.Join(host, "snap")
	os.Mkdir(snap, 0o700)
	os.WriteFile(filepath.Join(snap, "state"), nil, 0o600)
	s, _, err = ForVMM(vmmconfig.Config{Restore: snap, Jail: &vmmconfig.Jail{ID: "r", Dir: vmDir}}, vmDir, nil)
	if err != nil || !slices.Equal(s.Chown, []string{snap, filepath.Join(snap, "state")}) || !slices.Contains(s.Files, Bind{Path: snap, ReadOnly: true}) {
		t.Errorf("restore: %v, chown %v, binds %v", err, s.Chown, s.Files)
	}
}

// TestForVMMFirmware: the firmware image is found outside the jail (the
// default SeaBIOS, $GOVISOR_FIRMWARE_DIR first, or the one given) and
// bound read-only into it.
func TestForVMMFirmware(t *testing.T) {
	host := t.TempDir()
	devUserfaultfd, pvmModule = filepath.Join(host, "nouffd"), filepath.Join(host, "nopvm")
	vmDir := filepath.Join(host, "vms", "a")
	fw := filepath.Join(host, "fw")
	os.Mkdir(fw, 0o755)
	t.Setenv("GOVISOR_FIRMWARE_DIR", fw)
	cfg := vmmconfig.Config{Firmware: "bios", Disks: []vmmconfig.Disk{{Path: "/pool/boot.raw"}}, Jail: &vmmconfig.Jail{ID: "agent.a", Dir: vmDir}}
	bios := filepath.Join(fw, vmmconfig.SeaBIOSImage)
	os.WriteFile(bios, []byte("bios"), 0o644)
	s, out, err := ForVMM(cfg, vmDir, nil)
	if err != nil || out.FirmwareImage != bios || !slices.Contains(s.Files, Bind{Path: bios, ReadOnly: true}) {
		t.Errorf("default SeaBIOS: %v, image %q, binds %+v", err, out.FirmwareImage, s.Files)
	}
	cfg.FirmwareImage = filepath.Join(host, "my.bin")
	if s, out, err = ForVMM(cfg, vmDir, nil); err != nil || out.FirmwareImage != cfg.FirmwareImage || !slices.Contains(s.Files, Bind{Path: cfg.FirmwareImage, ReadOnly: true}) {
		t.Errorf("given image: %v, image %q, binds %+v", err, out.FirmwareImage, s.Files)
	}
}

// TestForVMMUEFI: a UEFI VM's variable file is made outside the jail,
// from the template beside OVMF's code, in the VM's folder, given to the
// jail's user to write; a second plan keeps what the file holds.
func TestForVMMUEFI(t *testing.T) {
	host := t.TempDir()
	devUserfaultfd, pvmModule = filepath.Join(host, "nouffd"), filepath.Join(host, "nopvm")
	fw := filepath.Join(host, "ovmf")
	os.Mkdir(fw, 0o755)
	code := filepath.Join(fw, vmmconfig.OVMFCode)
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(filepath.Join(fw, vmmconfig.OVMFVars), []byte("template"), 0o644)
	t.Setenv("GOVISOR_FIRMWARE_DIR", fw)
	vmDir := filepath.Join(host, "vms", "a")
	os.MkdirAll(vmDir, 0o755)
	cfg := vmmconfig.Config{Firmware: "uefi", FirmwareVars: "uefi-vars.fd", Disks: []vmmconfig.Disk{{Path: "/pool/boot.raw"}}, Jail: &vmmconfig.Jail{ID: "agent.a", Dir: vmDir}}
	s, out, err := ForVMM(cfg, vmDir, nil)
	vars := filepath.Join(vmDir, "uefi-vars.fd")
	if err != nil || out.FirmwareImage != code || out.FirmwareVars != vars || !slices.Contains(s.Chown, vars) || !slices.Contains(s.Files, Bind{Path: code, ReadOnly: true}) {
		t.Fatalf("UEFI: %v, code %q, vars %q, chown %v, binds %+v", err, out.FirmwareImage, out.FirmwareVars, s.Chown, s.Files)
	}
	if b, _ := os.ReadFile(vars); string(b) != "template" {
		t.Errorf("variable file holds %q, want the template", b)
	}
	os.WriteFile(vars, []byte("stored"), 0o600)
	if _, _, err := ForVMM(cfg, vmDir, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(vars); string(b) != "stored" {
		t.Errorf("a second start replaced the VM's variables: %q", b)
	}
}
