package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govisor/govisor/internal/diskimage"
	"github.com/govisor/govisor/internal/kvm/kvmtest"
	"github.com/govisor/govisor/internal/vmimport"
	"github.com/govisor/govisor/internal/vmimport/exporter"
	"github.com/govisor/govisor/internal/vmm/vmmconfig"
)

// TestImportVMXCLI imports a VMware VM with `govisor import vmx` into a
// folder: the disk is converted, the report names what was dropped, and
// the run config written is one govisor run takes.
func TestImportVMXCLI(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("vmware disk "), 100000)
	img, err := diskimage.Create(filepath.Join(dir, "web.vmdk"), "vmdk", 2<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(data, 0)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "web.vmx"), []byte(`displayName = "web"
virtualHW.version = "11"
uuid.bios = "56 4d a6 d2 17 06 63 43-dc 2d 99 59 b5 33 a7 b3"
numvcpus = "2"
memsize = "192"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "web.vmdk"
ide1:0.present = "TRUE"
ide1:0.deviceType = "cdrom-image"
ide1:0.fileName = "tools.iso"
ethernet0.present = "TRUE"
ethernet0.address = "00:50:56:01:02:03"
ethernet0.addressType = "static"
usb.present = "TRUE"
`), 0o644)
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runGovisor(t, "import", "vmx", filepath.Join(dir, "web.vmx"), "-O", out)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	for _, want := range []string{"VM web: 2 CPUs, 192 MiB, firmware bios", "mapped:  uuid.bios (virtual hardware 11: SMBIOS 2.4) -> SMBIOS UUID 564da6d2-1706-6343-dc2d-9959b533a7b3", "dropped: ide1:0: cdrom-image", "dropped: USB controller", "mac=00:50:56:01:02:03", "govisor run --config " + filepath.Join(out, "web.json")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	cfgText, err := os.ReadFile(filepath.Join(out, "web.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := vmmconfig.Parse(cfgText)
	if err != nil {
		t.Fatalf("the run config is refused: %v\n%s", err, cfgText)
	}
	if cfg.Firmware != "bios" || cfg.CPUs != 2 || cfg.MemoryMiB != 192 || len(cfg.Disks) != 1 || cfg.UUID != "564da6d2-1706-6343-dc2d-9959b533a7b3" {
		t.Errorf("run config %+v", cfg)
	}
	got, err := diskimage.Open(cfg.Disks[0].Path, diskimage.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(data))
	got.ReadAt(b, 0)
	got.Close()
	if !bytes.Equal(b, data) {
		t.Error("the imported disk differs from the source")
	}

	// A second import of the same name refuses, and -o json reports.
	if _, stderr, code := runGovisor(t, "import", "vmx", filepath.Join(dir, "web.vmx"), "-O", out); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Errorf("re-import: exit %d, %s", code, stderr)
	}
	stdout, stderr, code = runGovisor(t, "import", "vmx", filepath.Join(dir, "web.vmx"), "-O", out, "--name", "web2", "-o", "json")
	var res localImport
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || res.Name != "web2" || len(res.NICs) != 1 || res.UUID != cfg.UUID {
		t.Errorf("json: exit %d, %v, %+v\n%s", code, err, res, stderr)
	}
	if _, stderr, code := runGovisor(t, "import", "xen", "x"); code != exitInvalid || !strings.Contains(stderr, "use one of vmx") {
		t.Errorf("unknown source: exit %d, %s", code, stderr)
	}
}

// TestImageImportOVAAlias: the deprecated `govisor image import-ova` runs
// `govisor import ova`: the same disks and run config, the same output,
// and a deprecation notice on stderr naming the command to use.
func TestImageImportOVAAlias(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("appliance "), 200000)
	raw := filepath.Join(dir, "app.raw")
	os.WriteFile(raw, data, 0o644)
	ova := filepath.Join(dir, "app.ova")
	vm := &vmimport.VM{Name: "app", CPUs: 2, MemoryMiB: 128, Firmware: vmimport.FirmwareBIOS}
	if err := exporter.Export(context.Background(), exporter.Options{VM: vm, Images: []string{raw}, Out: ova}); err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{}
	for _, args := range [][]string{{"import", "ova", ova}, {"image", "import-ova", ova}} {
		out := filepath.Join(dir, args[0])
		stdout, stderr, code := runGovisor(t, append(args, "-O", out, "-o", "json")...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", args[:2], code, stdout, stderr)
		}
		deprecated := strings.Contains(stderr, `"import-ova" is deprecated, use "govisor import ova`)
		if deprecated != (args[0] == "image") {
			t.Errorf("%s: stderr %q", args[:2], stderr)
		}
		outputs[args[0]] = strings.ReplaceAll(stdout, out, "OUT")
		img, err := diskimage.Open(filepath.Join(out, "app-disk0.qcow2"), diskimage.OpenOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, len(data))
		img.ReadAt(b, 0)
		img.Close()
		if !bytes.Equal(b, data) {
			t.Errorf("%s: the imported disk differs from the exported one", args[:2])
		}
		if _, err := os.Stat(filepath.Join(out, "app.json")); err != nil {
			t.Errorf("%s: no run config: %v", args[:2], err)
		}
	}
	if outputs["import"] != outputs["image"] || !strings.Contains(outputs["image"], `"config": "OUT/app.json"`) {
		t.Errorf("outputs differ:\nimport ova:\n%s\nimage import-ova:\n%s", outputs["import"], outputs["image"])
	}
	// The old command's --output DIR is now the output format, which
	// refuses a folder before anything is converted.
	out := filepath.Join(dir, "old")
	if _, stderr, code := runGovisor(t, "image", "import-ova", ova, "--output", out); code != exitInvalid || !strings.Contains(stderr, "-O names the output folder") {
		t.Errorf("--output DIR: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("--output DIR made %s: %v", out, err)
	}
}

// TestExportImportKeepsUUID: `govisor export ova` of a run config writes
// its UUID into the OVA and `govisor import ova` gives it back, in the
// report and in the run config it writes.
func TestExportImportKeepsUUID(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	os.WriteFile(raw, bytes.Repeat([]byte("uuid"), 1<<18), 0o644)
	const uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	src := filepath.Join(dir, "keep.json")
	os.WriteFile(src, []byte(`{"firmware": "bios", "uuid": "`+uuid+`", "disks": [{"path": "`+raw+`"}]}`), 0o644)
	ova := filepath.Join(dir, "keep.ova")
	if out, errOut, code := runGovisor(t, "export", "ova", src, "-o", ova); code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	out := filepath.Join(dir, "imported")
	stdout, stderr, code := runGovisor(t, "import", "ova", ova, "-O", out, "-o", "json")
	var res localImport
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil || res.UUID != uuid {
		t.Fatalf("import: exit %d, %v, %+v\n%s", code, err, res, stderr)
	}
	cfg, err := vmmconfig.Load(filepath.Join(out, "keep.json"))
	if err != nil || cfg.UUID != uuid {
		t.Errorf("run config: %+v, %v", cfg, err)
	}
}

// TestImportOVABootsBIOS exports the SYSLINUX test disk as an OVA with
// `govisor export ova`, imports it back with `govisor import ova`, and
// boots the imported VM through SeaBIOS from the run config the import
// wrote, to the test guest's GUEST-READY.
func TestImportOVABootsBIOS(t *testing.T) {
	bios, disk := kvmtest.SeaBIOS(t), kvmtest.SyslinuxDisk(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "syslinux.json")
	cfg := `{"firmware": "bios", "cpus": 2, "memoryMiB": 256, "disks": [{"path": "` + disk + `", "readOnly": true}]}`
	os.WriteFile(src, []byte(cfg), 0o644)
	ova := filepath.Join(dir, "syslinux.ova")
	if out, errOut, code := runGovisor(t, "export", "ova", src, "-o", ova); code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := runGovisor(t, "import", "ova", ova, "-O", filepath.Join(dir, "imported"), "--name", "sys")
	if code != 0 || !strings.Contains(out, "VM sys: 2 CPUs, 256 MiB, firmware bios") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	t.Setenv("GOVISOR_FIRMWARE_DIR", filepath.Dir(bios))
	out, errOut, code = runGovisor(t, "run", "--config", filepath.Join(dir, "imported", "sys.json"))
	if code != 0 {
		t.Fatalf("run: exit %d; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	last := -1
	for _, want := range []string{"SeaBIOS (version", "SYSLINUX", "GUEST-READY", "GUEST-DONE"} {
		i := strings.Index(out[last+1:], want)
		if i < 0 {
			t.Fatalf("console lacks %q after the previous marker:\n%s\nstderr:\n%s", want, out, errOut)
		}
		last += 1 + i
	}
}

// TestImportThroughAgent imports a VMware VM into a storage pool through
// `govisor serve`: the agent converts the disk into a volume and returns a
// VM definition; -p follows the conversion on stderr.
func TestImportThroughAgent(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	startServe(t, filepath.Join(dir, "state"), sock)
	img, err := diskimage.Create(filepath.Join(dir, "app.vmdk"), "vmdk", 8<<20, diskimage.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img.WriteAt(bytes.Repeat([]byte("x"), 1<<20), 0)
	img.Close()
	os.WriteFile(filepath.Join(dir, "app.vmx"), []byte("displayName = \"app\"\nvirtualHW.version = \"14\"\nuuid.bios = \"42 1f 24 5c 7f a8 60 fa-6a f6 a4 63 51 ce d0 eb\"\nnumvcpus = \"3\"\nsata0:0.present = \"TRUE\"\nsata0:0.fileName = \"app.vmdk\"\nsound.present = \"TRUE\"\n"), 0o644)
	runCases(t, sock, []cliCase{
		{[]string{"pool", "create", "local", "--path", filepath.Join(dir, "images")}, 0, "created"},
		{[]string{"import", "vmx", filepath.Join(dir, "app.vmx"), "--pool", "local", "-p"}, 0, "volume:  app-disk0.qcow2 (qcow2, 8.0 MiB)"},
		{[]string{"import", "vmx", filepath.Join(dir, "app.vmx"), "--pool", "local"}, 4, "already exists"},
		{[]string{"import", "vmx", filepath.Join(dir, "app.vmx"), "--pool", "ghost", "--name", "b"}, 3, "no storage pool ghost"},
		{[]string{"import", "vmx", filepath.Join(dir, "app.vmx"), "--pool", "local", "-O", dir}, 2, "exclude each other"},
	})
	out, errOut, code := runGovisor(t, "import", "vmx", filepath.Join(dir, "app.vmx"), "--pool", "local", "--name", "app2", "-o", "json", "--socket", sock)
	var res struct {
		Spec struct {
			UUID  string `json:"uuid"`
			CPUs  int    `json:"cpus"`
			Disks []struct {
				Pool, Volume string
			} `json:"disks"`
		} `json:"spec"`
		Dropped []string `json:"dropped"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Spec.CPUs != 3 || len(res.Spec.Disks) != 1 ||
		res.Spec.Disks[0].Volume != "app2-disk0.qcow2" || len(res.Dropped) != 1 || res.Spec.UUID != "5c241f42-a87f-fa60-6af6-a46351ced0eb" {
		t.Errorf("import -o json: exit %d, %+v\n%s%s", code, res, out, errOut)
	}
}
