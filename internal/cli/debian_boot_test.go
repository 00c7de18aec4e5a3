//go:build debiandisk

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// The Debian test disks (scripts/debian-disk.sh) log root in on ttyS0,
// whose shell prompt is debianPrompt.
const debianPrompt = "root@govisor-debian:~#"

// exchange is a command typed on the guest's console and what its answer
// must contain: something only running it prints (the typed line's echo
// shows "$((6*7))", the shell prints 42).
type exchange struct{ send, want string }

var debianCommand = exchange{"cat /etc/debian_version; echo DEBIAN-$((6*7))\n", "DEBIAN-42"}

// govisorLong runs govisor with a deadline fit for converting a Debian
// disk in a lab host, where user space runs 10-18x slower than here.
func govisorLong(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, govisorBin(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("govisor %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("govisor %s: %v", args[0]+" "+args[1], time.Since(start).Round(100*time.Millisecond))
	return string(out)
}

// debianOverlay makes a qcow2 overlay on the cache's read-only Debian disk
// for the guest to write to.
func debianOverlay(t *testing.T, base string) string {
	t.Helper()
	ov := filepath.Join(t.TempDir(), "debian.qcow2")
	govisorLong(t, "image", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", ov)
	return ov
}

// bootDebian runs govisor with args (a firmware boot of a Debian test
// disk), waits through the firmware's and GRUB's first lines (markers, in
// order) to root's shell on the serial console, types the commands one
// after the other and waits for their answers, and returns the console's
// output. The console goes to the test log when it fails.
func bootDebian(t *testing.T, markers []string, dialog []exchange, args ...string) string {
	t.Helper()
	in, con, stderr, start := startConsoleVMM(t, exec.Command(govisorBin(t), args...), nil)
	deadline := start.Add(8 * time.Minute)
	fail := func(err error) {
		t.Helper()
		t.Fatalf("after %v: %v\nlast console lines:\n%s\nVMM stderr:\n%s", time.Since(start).Round(time.Second),
			err, con.tail(60), stderr.String())
	}
	off := 0
	var err error
	var seen []string
	for _, m := range append(markers, "Loading Linux", "Debian GNU/Linux 12 govisor-debian ttyS0", debianPrompt) {
		if off, err = con.waitFor(m, off, deadline); err != nil {
			fail(err)
		}
		seen = append(seen, fmt.Sprintf("%q %.1fs", m, time.Since(start).Seconds()))
	}
	// Where a slow boot spends its time: firmware, GRUB, kernel and
	// initramfs, systemd.
	t.Logf("Debian 12 reached root's shell on the serial console in %v (%s)", time.Since(start).Round(100*time.Millisecond), strings.Join(seen, ", "))
	for _, x := range dialog {
		if _, err := io.WriteString(in, x.send); err != nil {
			fail(err)
		}
		if off, err = con.waitFor(x.want, off, deadline); err != nil {
			fail(err)
		}
	}
	con.mu.Lock()
	defer con.mu.Unlock()
	return con.buf.String()
}

// TestDebianBIOSBoot boots the BIOS Debian disk as a user would, `govisor
// run --firmware bios --disk ...`: SeaBIOS, then the disk's MBR and GRUB,
// Debian's kernel and initramfs from virtio-blk, systemd, root's shell on
// ttyS0, which answers a command.
func TestDebianBIOSBoot(t *testing.T) {
	bios, base := kvmtest.SeaBIOS(t), kvmtest.DebianDisk(t, "bios")
	disk := debianOverlay(t, base)
	out := bootDebian(t, []string{"SeaBIOS (version", "Booting `Debian GNU/Linux 12"},
		[]exchange{debianCommand, {"systemd-analyze | sed 's/^/ANALYZE: /'; echo ANALYZED-$((6*7))\n", "ANALYZED-42"},
			// Debian's kernel reads the SMBIOS tables: the machine's UUID.
			{"cat /sys/class/dmi/id/product_uuid\n", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
		"run", "--firmware", "bios", "--firmware-image", bios, "--disk", "path="+disk,
		"--cpus", "1", "--memory", "512M", "--uuid", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
	// systemd's own account of the boot: kernel (with the initramfs) and
	// user space, for whoever finds the boot slow.
	if i := strings.LastIndex(out, "ANALYZE: Startup finished"); i >= 0 {
		line, _, _ := strings.Cut(out[i+len("ANALYZE: "):], "\n")
		t.Logf("in the guest: %s", strings.TrimSpace(line))
	}
}

// TestDebianImportBoots takes the BIOS Debian disk as other hypervisors
// would hand it over: converted to a streamOptimized VMDK with a VMware
// .vmx, exported as an OVA, converted to VHDX in a Hyper-V (2012 R2)
// export and to VDI with a VirtualBox .vbox. Each is imported with
// `govisor import` and the run config it writes boots to root's shell.
//
// The four run in parallel, each in its own Linux boot slot: a boot uses
// one of a lab host's two vCPUs.
func TestDebianImportBoots(t *testing.T) {
	bios := kvmtest.SeaBIOS(t)
	dir := t.TempDir()
	write := func(t *testing.T, name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, d := range []string{"vmware", "ova", "vbox"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sources := []struct {
		name, source string
		make         func(t *testing.T, base string) string // the path govisor import reads
	}{
		{"vmdk", "vmx", func(t *testing.T, base string) string {
			govisorLong(t, "image", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", base, filepath.Join(dir, "vmware", "deb.vmdk"))
			return write(t, "vmware/deb.vmx", `.encoding = "UTF-8"
config.version = "8"
virtualHW.version = "19"
displayName = "deb-vmware"
guestOS = "debian12-64"
numvcpus = "1"
memsize = "512"
scsi0.present = "TRUE"
scsi0.virtualDev = "pvscsi"
scsi0:0.present = "TRUE"
scsi0:0.fileName = "deb.vmdk"
`)
		}},
		{"ova", "ova", func(t *testing.T, base string) string {
			cfg := write(t, "ova/deb.json", `{"firmware": "bios", "cpus": 1, "memoryMiB": 512, "disks": [{"path": "`+base+`", "readOnly": true}]}`)
			ova := filepath.Join(dir, "ova", "deb-ova.ova")
			govisorLong(t, "export", "ova", cfg, "-o", ova)
			return ova
		}},
		{"vhdx", "hyperv", func(t *testing.T, base string) string {
			export := filepath.Join(dir, "deb-hyperv")
			if err := os.MkdirAll(filepath.Join(export, "Virtual Hard Disks"), 0o755); err != nil {
				t.Fatal(err)
			}
			govisorLong(t, "image", "convert", "-O", "vhdx", base, filepath.Join(export, "Virtual Hard Disks", "deb.vhdx"))
			// A generation 1 (BIOS) VM: properties/subtype 0.
			write(t, "deb-hyperv/Virtual Machines/5B0E1C2D-3A4B-4C5D-8E6F-7A8B9C0D1E2F.xml", `<?xml version="1.0"?>
<configuration>
<properties><name type="string">deb-hyperv</name><subtype type="integer">0</subtype></properties>
<settings><processors><count type="integer">1</count></processors><memory><bank><size type="integer">512</size></bank></memory></settings>
<_83f8638b-8dca-4152-9eda-2ca8b33039b4_><controller0><drive0><pathname type="string">D:\Hyper-V\deb\Virtual Hard Disks\deb.vhdx</pathname><type type="string">VHD</type></drive0></controller0></_83f8638b-8dca-4152-9eda-2ca8b33039b4_>
</configuration>`)
			return export
		}},
		{"vdi", "vbox", func(t *testing.T, base string) string {
			govisorLong(t, "image", "convert", "-O", "vdi", base, filepath.Join(dir, "vbox", "deb.vdi"))
			return write(t, "vbox/deb.vbox", `<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.16-linux">
<Machine uuid="{3b5e2f7a-9c41-4d0e-8f2a-6e1d2c3b4a59}" name="deb-vbox" OSType="Debian_64">
<MediaRegistry><HardDisks><HardDisk uuid="{a1b2c3d4-0000-4000-8000-000000000001}" location="deb.vdi" format="VDI" type="Normal"/></HardDisks></MediaRegistry>
<Hardware><CPU count="1"/><Memory RAMSize="512"/><Firmware type="BIOS"/></Hardware>
<StorageControllers><StorageController name="SATA" type="AHCI" PortCount="1" Bootable="true">
<AttachedDevice type="HardDisk" port="0" device="0"><Image uuid="{a1b2c3d4-0000-4000-8000-000000000001}"/></AttachedDevice>
</StorageController></StorageControllers>
</Machine>
</VirtualBox>`)
		}},
	}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			path := s.make(t, kvmtest.DebianDisk(t, "bios"))
			out := filepath.Join(dir, "imported-"+s.name)
			res := govisorLong(t, "import", s.source, path, "-O", out, "--name", "deb-"+s.name)
			if !strings.Contains(res, "VM deb-"+s.name+": 1 CPUs, 512 MiB, firmware bios") {
				t.Fatalf("import %s: the report does not say what was imported:\n%s", s.source, res)
			}
			// The firmware: the cache's SeaBIOS (the run config leaves it
			// to the default, $GOVISOR_FIRMWARE_DIR, which a parallel test
			// cannot set).
			cfgPath := filepath.Join(out, "deb-"+s.name+".json")
			cfg := map[string]any{}
			text, err := os.ReadFile(cfgPath)
			if err == nil {
				err = json.Unmarshal(text, &cfg)
			}
			if err != nil || cfg["firmware"] != "bios" {
				t.Fatalf("run config %s: %v, firmware %v", cfgPath, err, cfg["firmware"])
			}
			cfg["firmwareImage"] = bios
			text, _ = json.Marshal(cfg)
			if err := os.WriteFile(cfgPath, text, 0o644); err != nil {
				t.Fatal(err)
			}
			bootDebian(t, []string{"SeaBIOS (version", "Booting `Debian GNU/Linux 12"}, []exchange{debianCommand}, "run", "--config", cfgPath)
			// The imported disk is the import's own: free its memory (the
			// lab host's files live in RAM) before the next one.
			os.RemoveAll(out)
		})
	}
}
