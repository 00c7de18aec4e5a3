package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readNewc parses a newc cpio archive into name -> (mode, data).
func readNewc(t *testing.T, b []byte) map[string]struct {
	mode uint32
	data string
} {
	t.Helper()
	out := map[string]struct {
		mode uint32
		data string
	}{}
	field := func(h []byte, i int) int {
		v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field %d: %v", i, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at %d", off)
		}
		h := b[off : off+110]
		mode, size, namesize := field(h, 1), field(h, 6), field(h, 11)
		name := string(b[off+110 : off+110+namesize-1])
		off = align(off + 110 + namesize)
		data := string(b[off : off+size])
		off = align(off + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out[name] = struct {
			mode uint32
			data string
		}{uint32(mode), data}
	}
}

func TestOverlayArchive(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ov := &Overlay{}
	ov.Add("/opt/govisor/bin/tool", src, 0o755)
	ov.AddData("/run.sh", []byte("x"), 0o700)
	ov.AddData("guest/a/b", nil, 0o644)
	var buf bytes.Buffer
	if _, err := ov.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got := readNewc(t, buf.Bytes())
	for name, want := range map[string]struct {
		mode uint32
		data string
	}{
		"opt":                  {0o040755, ""},
		"opt/govisor":          {0o040755, ""},
		"opt/govisor/bin":      {0o040755, ""},
		"opt/govisor/bin/tool": {0o100755, "#!/bin/sh\necho hi\n"},
		"run.sh":               {0o100700, "x"},
		"guest":                {0o040755, ""},
		"guest/a":              {0o040755, ""},
		"guest/a/b":            {0o100644, ""},
	} {
		if got[name] != want {
			t.Errorf("%s: got mode %o data %q, want %o %q", name, got[name].mode, got[name].data, want.mode, want.data)
		}
	}
	if len(got) != 8 {
		t.Errorf("%d entries, want 8: %v", len(got), got)
	}
}

func TestRunScriptQuotes(t *testing.T) {
	t.Setenv("GOVISOR_X", "it's")
	t.Setenv("GOVISOR_CACHE", "/host/only")
	s := runScript("vm.test", []string{"-test.run", "Test'A|B$", "-test.v"}, "patched")
	for _, want := range []string{
		`export 'GOVISOR_X=it'\''s'`,
		`/tests/'vm.test' '-test.run' 'Test'\''A|B$' '-test.v' >/dev/ttyS1 2>&1`,
		"GOVISOR_TEST_BINDIR=/opt/govisor/bin",
		"GOVISOR_LAB_QEMU='patched'",
		`echo "LAB-RC=$rc"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("run script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "/host/only") {
		t.Errorf("the host's GOVISOR_CACHE leaked into the lab:\n%s", s)
	}
}

func TestQEMUFor(t *testing.T) {
	tcg := Accel{Accel: "tcg,thread=multi"}
	kvm := Accel{Accel: "kvm"}
	built := Assets{Dir: "/c/lab", QEMU: "/c/lab/qemu/qemu-system-x86_64"}
	for _, c := range []struct {
		name      string
		a         Assets
		accel     Accel
		bin, kind string
	}{
		{"TCG runs the lab's patched QEMU", built, tcg, built.QEMU, "patched"},
		{"TCG without it runs Debian's", Assets{Dir: "/c/lab"}, tcg, "qemu-system-x86_64", "debian"},
		{"KVM runs Debian's even when built", built, kvm, "qemu-system-x86_64", "kvm"},
	} {
		bin, kind := c.a.QEMUFor(c.accel)
		if bin != c.bin || kind != c.kind {
			t.Errorf("%s: got %s (%s), want %s (%s)", c.name, bin, kind, c.bin, c.kind)
		}
	}
}

func TestTickOptions(t *testing.T) {
	tcg := Accel{Accel: "tcg,thread=multi"}
	built := Assets{Dir: "/c/lab", QEMU: "/c/lab/qemu/qemu-system-x86_64"}
	for _, c := range []struct {
		name     string
		accel    Accel
		qemu     string
		a        Assets
		periodic bool
	}{
		{"Debian's QEMU under TCG", tcg, "qemu-system-x86_64", Assets{Dir: "/c/lab"}, true},
		{"Debian's QEMU under TCG, patched one built", tcg, "qemu-system-x86_64", built, true},
		{"the patched QEMU", tcg, built.QEMU, built, false},
		{"KVM", Accel{Accel: "kvm"}, "qemu-system-x86_64", built, false},
	} {
		got := strings.Join(tickOptions(c.accel, c.qemu, c.a), " ")
		if periodic := got == "highres=off nohz=off"; periodic != c.periodic || (!periodic && got != "") {
			t.Errorf("%s: options %q, want periodic tick %v", c.name, got, c.periodic)
		}
	}
}

func TestDefaultCPUs(t *testing.T) {
	for _, c := range []struct {
		accel Accel
		want  int
	}{
		{Accel{Accel: "tcg,thread=multi"}, 1},
		{Accel{Accel: "tcg"}, 1},
		{Accel{Accel: "kvm"}, 2},
	} {
		if got := DefaultCPUs(c.accel); got != c.want {
			t.Errorf("DefaultCPUs(%q) = %d, want %d", c.accel.Accel, got, c.want)
		}
	}
}

func TestReadResult(t *testing.T) {
	for _, c := range []struct {
		console string
		want    result
	}{
		{"LAB-INIT uptime=1\r\nLAB-KVM present: SVM\r\nLAB-KVMTESTS=12\r\nLAB-RC=0\r\n", result{rc: 0, kvm: true, kvmTests: 12}},
		{"LAB-KVM present: x\nLAB-RC=1\n", result{rc: 1, kvm: true}},
		{"LAB-KVM absent: no svm\nLAB-RC=0\n", result{rc: 0}},
		{"[ 3.0] Kernel panic - not syncing\n", result{rc: -1}},
	} {
		p := filepath.Join(t.TempDir(), "console.log")
		os.WriteFile(p, []byte(c.console), 0o644)
		if got := readResult(p); got != c.want {
			t.Errorf("%q: got %+v, want %+v", c.console, got, c.want)
		}
	}
}

func TestNeedsKVM(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// This package's tests never call kvmtest.Require.
	if needs, err := NeedsKVM(exe); err != nil || needs {
		t.Errorf("NeedsKVM(this test binary) = %v, %v; want false, nil", needs, err)
	}
	// hasFunc finds a function this binary has, and not one it lacks (the
	// Debian disks go only into lab hosts whose tests boot them).
	if has, err := hasFunc(exe, "github.com/govisor/govisor/internal/lab.hasFunc"); err != nil || !has {
		t.Errorf("hasFunc(this test binary, hasFunc) = %v, %v; want true, nil", has, err)
	}
	if has, err := hasFunc(exe, debianSymbol); err != nil || has {
		t.Errorf("hasFunc(this test binary, %s) = %v, %v; want false, nil", debianSymbol, has, err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if _, err := NeedsKVM(notELF); err == nil {
		t.Error("NeedsKVM of a shell script: no error")
	}
}

func TestFindAssetsNamesTheFix(t *testing.T) {
	_, err := FindAssets(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "make lab") {
		t.Errorf("FindAssets of an empty folder: %v; want an error naming `make lab`", err)
	}
}
