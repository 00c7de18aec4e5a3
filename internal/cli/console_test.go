package cli

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// followConsole starts cmd (a VMM), calls onLine with every line of the
// guest console as it arrives, and returns the whole console, the VMM's
// stderr and its exit error once it has ended. It kills the VMM (only the
// process this test started) after 25 minutes.
func followConsole(t *testing.T, cmd *exec.Cmd, onLine func(line string)) (console, stderr string, err error) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(25*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var con strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		con.WriteString(sc.Text() + "\n")
		if onLine != nil {
			onLine(sc.Text())
		}
	}
	err = cmd.Wait()
	return con.String(), errBuf.String(), err
}
