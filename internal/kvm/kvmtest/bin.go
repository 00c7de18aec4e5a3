package kvmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BinDirEnv names the environment variable that points tests at prebuilt
// binaries (a lab host has no Go toolchain): Binary then takes them from
// that folder instead of building them.
const BinDirEnv = "GOVISOR_TEST_BINDIR"

// Binaries that run each other from their own folder are built, and looked
// for, together: `govisor serve` starts the govisor-agent next to itself.
var binGroups = [][]testBin{{
	{"govisor", "github.com/govisor/govisor/cmd/govisor"},
	{"govisor-agent", "github.com/govisor/govisor/cmd/govisor-agent"},
}}

type testBin struct{ name, pkg string }

type binBuild struct {
	once sync.Once
	path string
	err  error
}

var (
	binMu     sync.Mutex
	binBuilds = map[string]*binBuild{}
	binDir    string // this process's build folder, made on first use
)

// Binary returns the path of executable name, built from package pkg (an
// import path). With $GOVISOR_TEST_BINDIR set it is $GOVISOR_TEST_BINDIR/name,
// which must exist; otherwise the package is built once per test process
// (CGO_ENABLED=0, GOOS=linux, GOARCH=amd64) into a temporary folder. govisor
// and govisor-agent always sit side by side in one folder.
func Binary(t testing.TB, name, pkg string) string {
	t.Helper()
	group := []testBin{{name, pkg}}
	for _, g := range binGroups {
		for _, b := range g {
			if b.name == name {
				group = g
			}
		}
	}
	if dir := os.Getenv(BinDirEnv); dir != "" {
		for _, b := range group {
			p := filepath.Join(dir, b.name)
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				t.Fatalf("%s=%s lacks the executable %s (wanted with %s): build it there with "+
					"`CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -o %s/ %s` (%v)",
					BinDirEnv, dir, b.name, name, dir, b.pkg, err)
			}
		}
		return filepath.Join(dir, name)
	}

	binMu.Lock()
	bb := binBuilds[name]
	if bb == nil {
		bb = &binBuild{}
		for _, b := range group {
			binBuilds[b.name] = bb
		}
	}
	binMu.Unlock()
	bb.once.Do(func() { bb.path, bb.err = build(group, name) })
	if bb.err != nil {
		t.Fatalf("build %s: %v", name, bb.err)
	}
	return bb.path
}

// build compiles group into this process's build folder and returns the
// path of name.
func build(group []testBin, name string) (string, error) {
	binMu.Lock()
	if binDir == "" {
		d, err := os.MkdirTemp("", "govisor-test-bin")
		if err != nil {
			binMu.Unlock()
			return "", err
		}
		binDir = d
	}
	dir := binDir
	binMu.Unlock()
	args := []string{"build"}
	if len(group) == 1 {
		// -o names the file: name need not be the package's last element.
		args = append(args, "-o", filepath.Join(dir, group[0].name), group[0].pkg)
	} else {
		// Several packages: each lands in dir under its last element, which
		// binGroups' names are.
		args = append(args, "-o", dir+string(filepath.Separator))
		for _, b := range group {
			args = append(args, b.pkg)
		}
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return filepath.Join(dir, name), nil
}
