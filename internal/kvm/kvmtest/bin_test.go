package kvmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fatalTB records a Fatalf and ends the goroutine, as testing does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func binaryOrFatal(t *testing.T, name, pkg string) (path, fatal string) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = Binary(f, name, pkg)
	}()
	<-done
	return path, f.msg
}

func TestBinaryPrebuilt(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(BinDirEnv, dir)
	write := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, fatal := binaryOrFatal(t, "vsockpeer", "example.com/vsockpeer"); !strings.Contains(fatal, "vsockpeer") || !strings.Contains(fatal, BinDirEnv) {
		t.Fatalf("missing prebuilt binary: %q", fatal)
	}
	write("vsockpeer")
	if p, fatal := binaryOrFatal(t, "vsockpeer", "example.com/vsockpeer"); fatal != "" || p != filepath.Join(dir, "vsockpeer") {
		t.Fatalf("prebuilt vsockpeer: %q, %q", p, fatal)
	}
	// govisor is no use without govisor-agent beside it.
	write("govisor")
	if _, fatal := binaryOrFatal(t, "govisor", "github.com/govisor/govisor/cmd/govisor"); !strings.Contains(fatal, "govisor-agent") {
		t.Fatalf("govisor without govisor-agent: %q", fatal)
	}
	write("govisor-agent")
	if p, fatal := binaryOrFatal(t, "govisor", "github.com/govisor/govisor/cmd/govisor"); fatal != "" || p != filepath.Join(dir, "govisor") {
		t.Fatalf("prebuilt govisor: %q, %q", p, fatal)
	}
}

func TestBinaryBuildsOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	t.Setenv(BinDirEnv, "")
	p := Binary(t, "vsockpeer", "github.com/govisor/govisor/guest/vsockpeer")
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("built %s: %v", p, err)
	}
	if p2 := Binary(t, "vsockpeer", "github.com/govisor/govisor/guest/vsockpeer"); p2 != p {
		t.Fatalf("second call gave %s, first %s", p2, p)
	}
	if fi2, _ := os.Stat(p); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("built twice")
	}
}
