package webui_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// webDir is the front-end project (web/ at the repository's top).
var webDir, _ = filepath.Abs("../../web")

var (
	npmOnce sync.Once
	npmErr  error
	npmOut  []byte
)

// requireNode returns the path of node, or fails in CI and skips elsewhere
// when there is none (scripts/deps.sh installs it with the test tools).
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = exec.LookPath("npm")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FAILED: the web console's tests need node and npm (scripts/deps.sh test): %v", err)
		}
		t.Skipf("SKIPPED: no node/npm: %v", err)
	}
	return node
}

// npmCI installs web/'s packages exactly as its lockfile pins them, once
// per test binary.
func npmCI(t *testing.T) {
	t.Helper()
	requireNode(t)
	npmOnce.Do(func() {
		// Another test process (a second go test, another package run)
		// must not reinstall node_modules under this one's feet: npm ci
		// and every later use hold web/.npm.lock, shared.
		lock, err := os.OpenFile(filepath.Join(webDir, ".npm.lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			npmErr = err
			return
		}
		if npmErr = flock(lock, syscall.LOCK_EX); npmErr != nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = webDir
		npmOut, npmErr = cmd.CombinedOutput()
		// Keep a shared lock for the rest of the test binary's life.
		flock(lock, syscall.LOCK_SH)
	})
	if npmErr != nil {
		t.Fatalf("npm ci in %s: %v\n%s", webDir, npmErr, npmOut)
	}
}

// npx runs a tool of web/'s packages there.
func npx(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(filepath.Join(webDir, "node_modules", ".bin", args[0]), args[1:]...)
	cmd.Dir = webDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v in %s: %v\n%s", args, webDir, err, out)
	}
	return out
}

// flock takes how on f, retrying when a signal interrupts the wait.
func flock(f *os.File, how int) error {
	for {
		if err := syscall.Flock(int(f.Fd()), how); err != syscall.EINTR {
			return err
		}
	}
}
