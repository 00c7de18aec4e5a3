package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// asm16 assembles the few real-mode (16-bit) instructions the test boot
// sector uses, with labels for its short jumps (Intel SDM vol. 2 encodings).
type asm16 struct {
	b      []byte
	org    uint16
	labels map[string]int
	fixups map[int]string // offset of a rel8 byte -> target label
}

func newAsm16(org uint16) *asm16 {
	return &asm16{org: org, labels: map[string]int{}, fixups: map[int]string{}}
}

func (a *asm16) emit(b ...byte) *asm16 { a.b = append(a.b, b...); return a }
func (a *asm16) label(n string) *asm16 { a.labels[n] = len(a.b); return a }
func (a *asm16) addr(n string) uint16  { return a.org + uint16(a.labels[n]) }

// jcc emits a short jump with opcode op (0xEB jmp, 0x74 jz, 0x72 jc).
func (a *asm16) jcc(op byte, target string) *asm16 {
	a.emit(op, 0)
	a.fixups[len(a.b)-1] = target
	return a
}

// imm16 emits op followed by a 16-bit immediate (mov r16, imm16: 0xB8+r).
func (a *asm16) imm16(op byte, v uint16) *asm16 { return a.emit(op, byte(v), byte(v>>8)) }

func (a *asm16) link(t *testing.T) []byte {
	for at, n := range a.fixups {
		to, ok := a.labels[n]
		rel := to - (at + 1)
		if !ok || rel < -128 || rel > 127 {
			t.Fatalf("asm16: short jump to %q out of reach", n)
		}
		a.b[at] = byte(int8(rel))
	}
	return a.b
}

// Markers the test disk prints: the first from its boot sector, the
// second from its second sector, which the boot sector reads with the
// BIOS's disk service (int 13h), so that SeaBIOS's virtio-blk driver has
// served a read the guest asked for.
const (
	bootSectorMarker = "GOVISOR-MBR-RUNNING"
	sector2Marker    = "GOVISOR-SECTOR2-READ-BY-INT13"
)

// bootDisk returns a 1 MiB raw disk whose MBR (BIOS boot protocol: loaded
// at 0000:7C00, DL = the boot drive, signature 55 AA at offset 510) prints
// bootSectorMarker with the BIOS video service (int 10h AH=0Eh, teletype:
// SeaBIOS's sercon puts it on COM1, as it does a boot loader's menu),
// reads sector 2 to 0000:7E00 with the disk service (int 13h AH=02h, CHS
// 0/0/2), prints the NUL-terminated text there, and powers the machine off
// through the ACPI PM1a control register (SLP_TYP S5 with SLP_EN) after
// letting sercon flush.
func bootDisk(t *testing.T) string {
	a := newAsm16(0x7C00)
	a.emit(0xFA)                           // cli
	a.emit(0x31, 0xC0)                     // xor ax, ax
	a.emit(0x8E, 0xD8).emit(0x8E, 0xC0)    // mov ds, ax; mov es, ax
	a.emit(0x8E, 0xD0).imm16(0xBC, 0x7C00) // mov ss, ax; mov sp, 0x7C00
	a.emit(0xFB, 0xFC)                     // sti; cld: lodsb counts upwards
	a.emit(0x89, 0xD5)                     // mov bp, dx: keep the boot drive
	a.imm16(0xBE, 0).label("msg1ref")      // mov si, msg1 (patched below)
	a.emit(0xE8, 0, 0).label("call1")      // call print
	a.emit(0x89, 0xEA)                     // mov dx, bp: DL = the boot drive
	a.imm16(0xB8, 0x0201)                  // mov ax, 0x0201: read 1 sector
	a.imm16(0xB9, 0x0002)                  // mov cx, 0x0002: cylinder 0, sector 2
	a.emit(0x30, 0xF6)                     // xor dh, dh: head 0
	a.imm16(0xBB, 0x7E00)                  // mov bx, 0x7E00: ES:BX buffer
	a.emit(0xCD, 0x13)                     // int 13h
	a.jcc(0x72, "halt")                    // jc halt: no marker, the test fails
	a.imm16(0xBE, 0x7E00)                  // mov si, 0x7E00
	a.emit(0xE8, 0, 0).label("call2")      // call print
	// Wait 4 timer ticks (about 220 ms, the BIOS tick count from int 1Ah
	// AH=00h in CX:DX): sercon holds the last character and the cursor
	// moves until its timer tick flushes them.
	a.emit(0xB4, 0x00, 0xCD, 0x1A)                     // mov ah, 0; int 1Ah
	a.emit(0x89, 0xD3, 0x83, 0xC3, 0x04)               // mov bx, dx; add bx, 4
	a.label("tick").emit(0xFB, 0xF4)                   // sti; hlt: until the next interrupt
	a.emit(0xB4, 0x00, 0xCD, 0x1A)                     // mov ah, 0; int 1Ah
	a.emit(0x39, 0xDA).jcc(0x72, "tick")               // cmp dx, bx; jb tick
	a.imm16(0xBA, 0x604).imm16(0xB8, 5<<10|1<<13)      // mov dx, PM1a_CNT; mov ax, SLP_TYP=5|SLP_EN
	a.emit(0xEF)                                       // out dx, ax: power off
	a.label("halt").emit(0xFA, 0xF4).jcc(0xEB, "halt") // cli; hlt; jmp halt
	// print: the NUL-terminated string at DS:SI through int 10h teletype.
	a.label("print")
	a.label("next").emit(0xAC)             // lodsb
	a.emit(0x84, 0xC0).jcc(0x74, "ret")    // test al, al; jz ret
	a.emit(0xB4, 0x0E).imm16(0xBB, 0x0007) // mov ah, 0x0E; mov bx, 0x0007: page 0, grey
	a.emit(0xCD, 0x10).jcc(0xEB, "next")   // int 10h; jmp next
	a.label("ret").emit(0xC3)              // ret
	a.label("msg1").emit([]byte(bootSectorMarker + "\r\n\x00")...)
	code := a.link(t)
	put16 := func(at int, v uint16) { code[at], code[at+1] = byte(v), byte(v>>8) }
	put16(a.labels["msg1ref"]-2, a.addr("msg1"))
	put16(a.labels["call1"]-2, uint16(a.labels["print"]-a.labels["call1"]))
	put16(a.labels["call2"]-2, uint16(a.labels["print"]-a.labels["call2"]))
	if len(code) > 446 {
		t.Fatalf("boot code of %d bytes overruns the partition table", len(code))
	}
	disk := make([]byte, 1<<20)
	copy(disk, code)
	disk[510], disk[511] = 0x55, 0xAA
	copy(disk[512:], sector2Marker+"\r\n\x00")
	p := filepath.Join(t.TempDir(), "boot.img")
	if err := os.WriteFile(p, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testUUID is the machine UUID the firmware tests give, as SMBIOS carries
// it to the guest (6ba7b810-9dad-11d1-80b4-00c04fd430c8).
var testUUID = [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// bootFirmware boots disk through SeaBIOS and returns the console, the
// firmware's debug log and how the machine stopped.
func bootFirmware(t *testing.T, cpus int, memMiB uint64, disk string, limit time.Duration) (console, log string, ex Exit) {
	t.Helper()
	bios, err := os.ReadFile(kvmtest.SeaBIOS(t))
	if err != nil {
		t.Fatal(err)
	}
	var out, fwlog syncBuffer
	m, err := New(Config{
		CPUs: cpus, MemoryMiB: memMiB, Firmware: bios, Console: &out, FirmwareLog: &fwlog,
		Disks: []Disk{{Path: disk, ReadOnly: true}}, UUID: testUUID,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := m.Start(); err != nil {
		m.Close()
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(limit):
		stallReport(t, m)
		m.Stop(Exit{Reason: ExitHost, Detail: "the test's time limit"})
	}
	ex = m.Wait()
	m.Close()
	t.Logf("%d vCPUs: %s %s after %v; console:\n%s", cpus, ex.Reason, ex.Detail, time.Since(start).Round(time.Millisecond), out.String())
	if ex.Reason != ExitPowerOff {
		t.Fatalf("%d vCPUs: stopped with %s %s %v, want poweroff; SeaBIOS log:\n%s", cpus, ex.Reason, ex.Detail, ex.Err, fwlog.String())
	}
	return out.String(), fwlog.String(), ex
}

// inOrder fails the test unless console has each of want, in that order.
func inOrder(t *testing.T, console, log string, want ...string) {
	t.Helper()
	last := -1
	for _, w := range want {
		i := strings.Index(console[last+1:], w)
		if i < 0 {
			t.Fatalf("console lacks %q after the previous marker; SeaBIOS log:\n%s", w, log)
		}
		last += 1 + i
	}
}

// TestSeaBIOSBootsDisk boots a hand-made disk through SeaBIOS: the
// firmware's banner reaches the serial console (sercon), then the boot
// sector's marker, then the text of the sector it read through int 13h
// from the virtio-blk disk, then the machine powers off.
func TestSeaBIOSBootsDisk(t *testing.T) {
	disk := bootDisk(t)
	for _, cpus := range []int{1, 2} {
		console, log, _ := bootFirmware(t, cpus, 128, disk, 2*time.Minute)
		inOrder(t, console, log, "SeaBIOS (version", "Booting from Hard Disk", bootSectorMarker, sector2Marker)
		for _, w := range []string{"Found QEMU fw_cfg", "Running on QEMU", "QEMU fw_cfg DMA interface supported",
			"boot order:\n1: /pci@i0cf8/*@1", "table(50434146)"} { // "FACP" found through the RSDP the loader placed
			if !strings.Contains(log, w) {
				t.Errorf("%d vCPUs: SeaBIOS's log lacks %q:\n%s", cpus, w, log)
			}
		}
	}
}

// TestSeaBIOSBootsSyslinux boots a real boot loader: SYSLINUX from a
// partitioned disk (scripts/firmware.sh) loads the test kernel and
// initramfs with the BIOS's disk service; Linux finds the ACPI tables
// SeaBIOS installed from the table loader, brings up the second vCPU
// SeaBIOS left parked, reads the machine's SMBIOS tables, and powers off
// through ACPI.
func TestSeaBIOSBootsSyslinux(t *testing.T) {
	disk := kvmtest.SyslinuxDisk(t)
	console, log, _ := bootFirmware(t, 2, 256, disk, 5*time.Minute)
	inOrder(t, console, log, "SeaBIOS (version", "Booting from Hard Disk", "SYSLINUX", "GUEST-READY", "GUEST-DONE")
	for _, table := range []string{"APIC", "DSDT", "FACP", "FACS"} {
		if !regexp.MustCompile(`(^|\s)` + table + `(\s|$)`).MatchString(console[strings.Index(console, "GUEST-READY"):]) {
			t.Errorf("the guest's /sys/firmware/acpi/tables lacks %s", table)
		}
	}
	if !regexp.MustCompile(`(?m)^2\r?$`).MatchString(console) {
		t.Errorf("the guest's nproc did not print 2")
	}
	// The SMBIOS tables govisor gave over fw_cfg, as SeaBIOS installed
	// them and Linux read them (DMI): vendor, product and the UUID.
	if want := "DMI: govisor govisor VM 6ba7b810-9dad-11d1-80b4-00c04fd430c8"; !strings.Contains(console, want) {
		t.Errorf("the guest's DMI lacks %q", want)
	}
}

// TestFirmwareMachineSaves: a machine booted through firmware saves its
// firmware with it (the image, fw_cfg's registers), and a snapshot of it
// restores a machine running the saved image, whatever image the restoring
// host has.
func TestFirmwareMachineSaves(t *testing.T) {
	bios, err := os.ReadFile(kvmtest.SeaBIOS(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{CPUs: 1, MemoryMiB: 64, Firmware: bios, Disks: []Disk{{Path: bootDisk(t), ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if st.Firmware == nil || !bytes.Equal(st.Firmware.Image, bios) || st.Firmware.Vars != nil {
		t.Fatalf("firmware state %+v: want the image and no UEFI variables", st.Firmware)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	if err := m.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	r, err := RestoreSnapshot(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !bytes.Equal(r.rom, bios) || r.uefi() {
		t.Error("the restored machine does not run the saved firmware")
	}
}
