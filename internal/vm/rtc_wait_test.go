package vm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govisor/govisor/internal/kvm/kvmtest"
)

// Markers the RTC-wait boot sector writes to COM1.
const (
	rtcWaitStart = "GOVISOR-RTC-WAIT-START"
	rtcWaitDone  = "GOVISOR-RTC-WAITED"
	rtcWaitError = "GOVISOR-RTC-WAIT-ERROR"
)

// rtcWaitDisk returns a raw disk whose boot sector (loaded at 0000:7C00,
// 55 AA at offset 510) waits 200 ms with the BIOS's wait service, int 15h
// AH=86h (CX:DX = microseconds), rounds times, writing a dot after each,
// then writes rtcWaitDone and the number of BIOS timer ticks (int 1Ah
// AH=00h, 18.2 Hz) the waits took straight to COM1's data port, and
// powers the machine off through the ACPI PM1a control register (SLP_TYP
// S5 with SLP_EN). SeaBIOS's handle_1586 enables the
// RTC's periodic interrupt (register B PIE) and spins until its IRQ 8
// handler has counted the time down, so without IRQ 8 the call never
// returns.
func rtcWaitDisk(t *testing.T, rounds uint16) string {
	a := newAsm16(0x7C00)
	var msgRefs []string // labels after each mov si, imm16 to patch
	say := func(msg string) {
		ref := "ref-" + msg
		loop, end := "loop-"+msg, "end-"+msg
		a.imm16(0xBE, 0).label(ref)             // mov si, msg (patched below)
		a.imm16(0xBA, 0x3F8)                    // mov dx, 0x3F8: COM1's transmit register
		a.label(loop).emit(0xAC)                // lodsb
		a.emit(0x84, 0xC0).jcc(0x74, end)       // test al, al; jz end
		a.emit(0xEE).jcc(0xEB, loop).label(end) // out dx, al; jmp loop
		msgRefs = append(msgRefs, msg)
	}
	a.emit(0xFA)                           // cli
	a.emit(0x31, 0xC0)                     // xor ax, ax
	a.emit(0x8E, 0xD8).emit(0x8E, 0xC0)    // mov ds, ax; mov es, ax
	a.emit(0x8E, 0xD0).imm16(0xBC, 0x7C00) // mov ss, ax; mov sp, 0x7C00
	a.emit(0xFB, 0xFC)                     // sti; cld: lodsb counts upwards
	// Wait two BIOS timer ticks before writing to COM1 directly: sercon
	// still holds the cursor move after "Booting from Hard Disk..." and
	// its timer tick flushes it, which put a line break in the middle of
	// the start marker in a CI run.
	a.emit(0xB4, 0x00, 0xCD, 0x1A)         // mov ah, 0; int 1Ah
	a.emit(0x89, 0xD3, 0x83, 0xC3, 0x02)   // mov bx, dx; add bx, 2
	a.label("settle").emit(0xFB, 0xF4)     // sti; hlt: until the next interrupt
	a.emit(0xB4, 0x00, 0xCD, 0x1A)         // mov ah, 0; int 1Ah
	a.emit(0x39, 0xDA).jcc(0x72, "settle") // cmp dx, bx; jb settle
	say("start")
	a.emit(0xB4, 0x00, 0xCD, 0x1A) // mov ah, 0; int 1Ah: ticks in CX:DX
	a.emit(0x89, 0xD5)             // mov bp, dx: the low word, kept by the BIOS
	a.imm16(0xBF, rounds)          // mov di, rounds (kept by the BIOS too)
	a.label("round")
	a.emit(0xB4, 0x86)              // mov ah, 0x86: wait
	a.imm16(0xB9, 0x0003)           // mov cx, 0x0003
	a.imm16(0xBA, 0x0D40)           // mov dx, 0x0D40: CX:DX = 200000 us
	a.emit(0xCD, 0x15)              // int 15h
	a.jcc(0x72, "failed")           // jc failed: the BIOS refused
	a.imm16(0xBA, 0x3F8)            // mov dx, 0x3F8
	a.emit(0xB0, '.', 0xEE)         // mov al, '.'; out dx, al
	a.emit(0x4F).jcc(0x75, "round") // dec di; jnz round
	a.emit(0xB4, 0x00, 0xCD, 0x1A)  // mov ah, 0; int 1Ah
	a.emit(0x29, 0xEA)              // sub dx, bp: ticks the wait took
	a.emit(0x89, 0xD0)              // mov ax, dx
	a.emit(0xD4, 0x0A)              // aam: AH = AL / 10, AL = AL % 10 (tens past '9' from 100 on)
	a.imm16(0x05, 0x3030)           // add ax, '00': two decimal digits
	a.emit(0x89, 0xC3)              // mov bx, ax
	say("done")                     // (clobbers dx, not bx)
	a.emit(0x88, 0xF8, 0xEE)        // mov al, bh; out dx, al: tens
	a.emit(0x88, 0xD8, 0xEE)        // mov al, bl; out dx, al: units
	say("eol")
	a.label("off")
	a.imm16(0xBA, 0x604)             // mov dx, PM1a_CNT
	a.imm16(0xB8, 5<<10|1<<13)       // mov ax, SLP_TYP=5 | SLP_EN
	a.emit(0xEF)                     // out dx, ax: power off
	a.label("halt").emit(0xFA, 0xF4) // cli; hlt
	a.jcc(0xEB, "halt")              // jmp halt
	a.label("failed")
	say("error")
	a.jcc(0xEB, "off") // jmp off
	texts := map[string]string{
		"start": rtcWaitStart + "\r\n", "done": rtcWaitDone + " ", "eol": " ticks\r\n", "error": rtcWaitError + "\r\n",
	}
	for _, m := range msgRefs {
		a.label("msg-" + m).emit([]byte(texts[m] + "\x00")...)
	}
	code := a.link(t)
	for _, m := range msgRefs {
		at, v := a.labels["ref-"+m]-2, a.addr("msg-"+m)
		code[at], code[at+1] = byte(v), byte(v>>8)
	}
	if len(code) > 446 {
		t.Fatalf("boot code of %d bytes overruns the partition table", len(code))
	}
	disk := make([]byte, 1<<20)
	copy(disk, code)
	disk[510], disk[511] = 0x55, 0xAA
	p := filepath.Join(t.TempDir(), "rtcwait.img")
	if err := os.WriteFile(p, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRTCWaitBIOS: a boot sector's int 15h AH=86h wait through SeaBIOS
// returns, which takes the RTC's periodic interrupt on IRQ 8 (before the
// RTC raised interrupts it hung until the time limit).
func TestRTCWaitBIOS(t *testing.T) {
	start := time.Now()
	console, log, _ := bootFirmware(t, 1, 128, rtcWaitDisk(t, 1), 2*time.Minute)
	console = withoutLineBreaks(console)
	inOrder(t, console, log, "Booting from Hard Disk", rtcWaitStart, rtcWaitDone)
	if strings.Contains(console, rtcWaitError) {
		t.Fatalf("int 15h AH=86h failed (CF set)")
	}
	m := regexp.MustCompile(rtcWaitDone + ` (\S+) ticks`).FindStringSubmatch(console)
	if m == nil {
		t.Fatalf("console lacks the tick count after %q", rtcWaitDone)
	}
	// Logged, not asserted: the lab's nested, emulated host makes wall
	// time no measure of the RTC's rate.
	t.Logf("a 200 ms wait took %s BIOS timer ticks (of 54.9 ms); the boot %v", m[1], time.Since(start).Round(time.Millisecond))
}

// TestRTCWaitAcrossSnapshot: a guest in the middle of its BIOS waits (the
// RTC's periodic interrupt enabled) is snapshotted; the original, paused
// and resumed by the snapshot, and a machine restored from the snapshot
// both finish their waits and power off, so the RTC's timer came back
// after the pause and was re-armed from the restored registers.
func TestRTCWaitAcrossSnapshot(t *testing.T) {
	bios, err := os.ReadFile(kvmtest.SeaBIOS(t))
	if err != nil {
		t.Fatal(err)
	}
	disk := rtcWaitDisk(t, 15) // 3 s of waits
	var out, fwlog syncBuffer
	m, err := New(Config{CPUs: 1, MemoryMiB: 128, Firmware: bios, Console: &out, FirmwareLog: &fwlog,
		Disks: []Disk{{Path: disk, ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	// Two waits done: two dots after the start marker, whatever line
	// breaks SeaBIOS's serial console put between them.
	waited := func() int {
		s := withoutLineBreaks(out.String())
		i := strings.Index(s, rtcWaitStart)
		if i < 0 {
			return 0
		}
		return strings.Count(s[i:], ".")
	}
	deadline := time.Now().Add(2 * time.Minute)
	for waited() < 2 {
		if time.Now().After(deadline) {
			m.Stop(Exit{Reason: ExitHost, Detail: "the test's time limit"})
			t.Fatalf("no two waits done in 2 minutes; console:\n%s\nSeaBIOS log:\n%s", out.String(), fwlog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	if err := m.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot after %q", out.String())
	finish := func(name string, m *Machine, out *syncBuffer) {
		t.Helper()
		select {
		case <-m.Done():
		case <-time.After(2 * time.Minute):
			m.Stop(Exit{Reason: ExitHost, Detail: "the test's time limit"})
		}
		ex := m.Wait()
		if ex.Reason != ExitPowerOff || !strings.Contains(withoutLineBreaks(out.String()), rtcWaitDone) {
			t.Fatalf("%s machine: stopped with %s %s; console:\n%s", name, ex.Reason, ex.Detail, out.String())
		}
		t.Logf("%s machine: %q", name, out.String())
	}
	finish("original", m, &out)
	var out2 syncBuffer
	r, err := RestoreSnapshot(dir, &out2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	finish("restored", r, &out2)
}

// withoutLineBreaks drops CR and LF: SeaBIOS's sercon may flush a
// pending cursor move between the bytes the boot sector writes to COM1
// itself, and no marker of these tests holds a line break.
func withoutLineBreaks(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}
